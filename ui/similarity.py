"""How alike two clips' activations are, layer by layer (the Compare page's divergence chart)."""

from __future__ import annotations

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays of one shape, in float64.

    Two silent (all-zero) maps are identical (1); one silent map shares nothing with a live one (0),
    rather than the NaN that dividing by a zero norm gives.
    """
    if a.shape != b.shape:
        raise ValueError(f"cannot compare activations shaped {a.shape} and {b.shape}")
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    if norm_a == 0 or norm_b == 0:
        return 1.0 if norm_a == norm_b else 0.0
    return float(a @ b / (norm_a * norm_b))


def layer_similarities(
    first: dict[str, np.ndarray], second: dict[str, np.ndarray], nodes: list[str]
) -> dict[str, list[float]]:
    """Per node, the cosine of the whole maps ``(channels, mels, frames)`` and of the channel means, which
    ignore where and when a channel fired: a low first with a high second means the same features, elsewhere."""
    return {
        "whole maps": [cosine(first[n], second[n]) for n in nodes],
        "channel means (ignores where/when)": [cosine(first[n].mean(axis=(1, 2)), second[n].mean(axis=(1, 2)))
                                               for n in nodes],
    }  # fmt: skip
