"""Linear centred kernel alignment (CKA, Kornblith et al. 2019): how alike two representations are.

Two representations of the same ``n`` examples, ``X (n, p)`` and ``Y (n, q)``, are compared
through their example-by-example Gram matrices ``K = X Xᵀ`` and ``L = Y Yᵀ``:

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)),   HSIC(K, L) = <HKH, HLH>_F

with ``H`` the centring matrix. It is 1 for identical representations, invariant to
orthogonal transforms and isotropic scaling of either one (not to arbitrary invertible
linear maps, which is what lets it compare layers wider than ``n``), and near 0 for
unrelated ones. Working on ``n x n`` Grams keeps a 400 000-feature stage of 100 clips to a
100 x 100 matrix, and a pair of models costs only the product of their Grams.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

GRAM_CHUNK = 1 << 15
"""Feature columns multiplied at a time: a float64 chunk of 100 clips is 26 MB."""


def gram(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """The linear kernel ``X Xᵀ`` (float64) of ``features (n, ...)``, flattened per example.

    Columns are multiplied a chunk at a time in float64, so a bf16 or float32 store of a wide
    stage is never copied whole.
    """
    x = torch.as_tensor(features)
    x = x.reshape(x.shape[0], -1)
    result = torch.zeros((x.shape[0], x.shape[0]), dtype=torch.float64)
    for start in range(0, x.shape[1], GRAM_CHUNK):
        chunk = x[:, start : start + GRAM_CHUNK].to(torch.float64)
        result += chunk @ chunk.T
    return result.numpy()


def center(kernel: np.ndarray) -> np.ndarray:
    """``H K H``: the Gram of the representation with its mean over the examples removed."""
    kernel = np.asarray(kernel, dtype=np.float64)
    return kernel - kernel.mean(axis=0, keepdims=True) - kernel.mean(axis=1, keepdims=True) + kernel.mean()


def cka_from_grams(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (the paper's names)
    """Linear CKA from two Gram matrices of the same examples.

    A representation that is the same for every example (a dead layer) has no variance to
    align: two such are called identical (1), one against a live one shares nothing (0).
    """
    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"CKA needs two square Grams of the same examples, got {k.shape} and {l.shape}")
    kc, lc = center(k), center(l)
    norm_k, norm_l = np.linalg.norm(kc), np.linalg.norm(lc)
    scale = max(np.abs(k).max(initial=0.0), np.abs(l).max(initial=0.0), 1e-300)
    dead_k, dead_l = norm_k <= 1e-12 * scale, norm_l <= 1e-12 * scale
    if dead_k or dead_l:
        return 1.0 if dead_k and dead_l else 0.0
    return float(np.clip(np.sum(kc * lc) / (norm_k * norm_l), 0.0, 1.0))


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA of two representations ``(n, ...)`` of the same ``n`` examples."""
    if len(x) != len(y):
        raise ValueError(f"CKA compares representations of the same examples: {len(x)} vs {len(y)} rows")
    if len(x) < 2:
        raise ValueError("CKA needs at least two examples")
    return cka_from_grams(gram(x), gram(y))


def cka_matrix(grams_a: Sequence[np.ndarray], grams_b: Sequence[np.ndarray]) -> np.ndarray:
    """``(len(grams_a), len(grams_b))``: CKA of every layer of one model with every layer of the other."""
    return np.array([[cka_from_grams(k, l) for l in grams_b] for k in grams_a], dtype=np.float64)  # noqa: E741
