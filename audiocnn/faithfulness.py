"""How far to trust a map: delete the cells it ranks highest and watch the explained score fall.

For one clip, one target and one map, the cells are deleted in three orders at each share of
``SHARES``: most relevant first (a faithful map makes the score fall fast), least relevant first
(it should hold) and a seeded random order (the baseline any map must beat). All copies and the
untouched clip are scored in one batched pass of one view (the unrolled window the maps are
computed on), 13 forward passes per removal at the default shares.

Deletion sets a cell to the clip's floor (its quietest value, ``top_db`` below the peak): the value
training's SpecAugment masks write, so deleted regions are silence the model has seen, not an
out-of-distribution edit (a fixed value such as 0 dB would be a loud tone on a quiet clip). Isolated
deleted cells are another matter (see ``REMOVALS``): the ROAD-style ``impute`` removal is measured
beside it.

Each curve's area is the mean over the shares of the score relative to the untouched clip's
(trapezoid rule, 0 to ``max(SHARES)``): 1 means deletion did nothing, 0 that the class was gone at
once. The *gap* (least-first area minus most-first area) is the figure a method is chosen by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .attribution import BATCH, Forward, Target, target_probability

SHARES = (0.0, 0.1, 0.2, 0.3, 0.5)
"""Shares of the spectrogram's cells deleted (0: the untouched clip)."""

ORDERS = ("most_first", "least_first", "random")

REMOVALS = {
    "floor": "set to the clip's floor (its quietest value), as SpecAugment masks",
    "impute": "filled with the mean of the kept cells within 2 cells around (ROAD-style), the floor where none is kept",
}
"""How a deleted cell is removed. A cell alone at the floor inside a loud region is a hole no training
clip has (SpecAugment masks whole bands and stretches), and such holes can lower the class whatever
the map ranks, so a random order scores deceptively well; imputing isolated cells from their
neighbours (after Rong et al., ROAD, ICML 2022: noisy linear imputation, here one neighbourhood mean)
removes their information without the holes, while large deleted regions still fall to the floor."""

IMPUTE_RADIUS = 2


@dataclass(frozen=True)
class Faithfulness:
    """The explained score (probability, or A's share against B) after each deletion share, per order."""

    shares: np.ndarray  # (S,) from 0
    most_first: np.ndarray  # (S,) score with the top-ranked share deleted
    least_first: np.ndarray  # (S,) with the bottom-ranked share deleted
    random: np.ndarray  # (S,) with a random share deleted
    removal: str = "floor"

    @property
    def base(self) -> float:
        return float(self.most_first[0])

    def area(self, order: str) -> float:
        """Mean score over the shares relative to the untouched clip's (see the module docstring)."""
        if order not in ORDERS:
            raise ValueError(f"unknown deletion order {order!r}; expected one of {ORDERS}")
        curve = getattr(self, order)
        if self.base <= 0:
            return float("nan")
        span = self.shares[-1] - self.shares[0]
        return float(np.trapezoid(curve / self.base, self.shares) / span)

    @property
    def gap(self) -> float:
        """Least-first area minus most-first area: how much better than chance the map orders cells."""
        return self.area("least_first") - self.area("most_first")

    def at(self, share: float) -> dict[str, float]:
        """The three scores at one of the measured shares."""
        matches = np.flatnonzero(np.isclose(self.shares, share))
        if not len(matches):
            raise ValueError(f"share {share} was not measured; measured: {self.shares.tolist()}")
        i = int(matches[0])
        return {order: float(getattr(self, order)[i]) for order in ORDERS}


def ranking(relevance: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat cell indices, most relevant first. Ties (Grad-CAM's zeros, occlusion's patches) are
    broken in a seeded random order, never by position: a positional tie-break would delete the
    low bands first and score the map on an artefact of the layout."""
    values = np.nan_to_num(np.asarray(relevance, np.float64).ravel(), nan=-np.inf)
    shuffle = np.random.default_rng(seed).permutation(values.size)
    return shuffle[np.argsort(-values[shuffle], kind="stable")]


def deleted_copies(
    logmel: torch.Tensor, order: np.ndarray, shares: tuple[float, ...], removal: str = "floor"
) -> torch.Tensor:
    """Copies of one log-mel ``(1, 1, mels, frames)`` with the first ``share`` of ``order``'s cells
    removed as ``removal`` says (``REMOVALS``), one copy per share."""
    if removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; expected one of {sorted(REMOVALS)}")
    mels, frames = logmel.shape[-2], logmel.shape[-1]
    deleted = torch.zeros(len(shares), mels * frames, dtype=torch.bool)
    for i, share in enumerate(shares):
        deleted[i, torch.from_numpy(order[: round(share * mels * frames)])] = True
    deleted = deleted.reshape(len(shares), 1, mels, frames)
    copies = logmel.repeat(len(shares), 1, 1, 1)
    floor = logmel.amin()
    if removal == "floor":
        return torch.where(deleted, floor, copies)
    kept = (~deleted).to(copies.dtype)
    size = 2 * IMPUTE_RADIUS + 1
    kernel = torch.ones(1, 1, size, size, dtype=copies.dtype)
    total = F.conv2d(copies * kept, kernel, padding=IMPUTE_RADIUS)
    count = F.conv2d(kept, kernel, padding=IMPUTE_RADIUS)
    fill = torch.where(count > 0, total / count.clamp_min(1), floor)
    return torch.where(deleted, fill, copies)


def measure(
    forward: Forward,
    logmel: torch.Tensor,
    relevance: np.ndarray,
    target: Target,
    shares: tuple[float, ...] = SHARES,
    seed: int = 0,
    removals: tuple[str, ...] = ("floor",),
) -> dict[str, Faithfulness]:
    """The three deletion curves of one map for each removal, in one batched pass (the untouched
    clip included once)."""
    if logmel.dim() != 4 or logmel.shape[0] != 1:
        raise ValueError("faithfulness expects a single clip shaped (1, 1, mels, frames)")
    if relevance.shape != tuple(logmel.shape[-2:]):
        raise ValueError(f"the map is {relevance.shape}, the spectrogram {tuple(logmel.shape[-2:])}")
    if len(shares) < 2 or shares[0] != 0 or list(shares) != sorted(shares) or shares[-1] > 1:
        raise ValueError(f"shares must rise from 0 to at most 1, not {shares}")
    most = ranking(relevance, seed)
    random_order = np.random.default_rng(seed + 1).permutation(most.size)
    later = shares[1:]
    orders = (most, most[::-1].copy(), random_order)
    batch = torch.cat([logmel, *(deleted_copies(logmel, o, later, r) for r in removals for o in orders)])
    with torch.inference_mode():
        scores = torch.cat([target_probability(forward(batch[i : i + BATCH]), target)
                            for i in range(0, len(batch), BATCH)]).double().numpy()  # fmt: skip
    base, rest = scores[:1], scores[1:].reshape(len(removals), 3, len(later))
    grid = np.asarray(shares, np.float64)
    return {
        removal: Faithfulness(grid, *(np.concatenate([base, row]) for row in curves), removal=removal)
        for removal, curves in zip(removals, rest)
    }
