"""What the model thinks a clip sounds like: pooled penultimate features, a 2-D map and neighbours.

The feature of a clip is the network's ``pool`` activation (the vector the linear head reads), of
the same unrolled view ``Predictor.analyze`` captures, so a clip analysed in the app and the same
clip in the map have one embedding. Two maps of the reference clips (the held-out fold), both computed
once: a PCA (linear: its axes are directions of the feature space) and a t-SNE (keeps
neighbourhoods: on the shipped model a clip's 5 nearest points in it share its class 80 % of the
time, 12 % in the PCA). A new clip is never re-fitted into either, so adding it cannot move the
others: the PCA *projects* it with the fitted transform, the t-SNE places it at the
similarity-weighted mean of its nearest reference clips (``place``). Neighbours are ranked by
cosine similarity in the full feature space (512-D for the shipped model): the 2-D maps are for
looking, not for measuring.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .inference import WINDOW_BATCH, Predictor

FEATURE_NODE = "pool"


class EmbeddingError(ValueError):
    """Features that cannot be mapped together (wrong shape, NaN, too few clips)."""


def checkpoint_identity(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file: the key an embedding map belongs to (paths and mtimes move)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pooled_features(
    predictor: Predictor, waveforms: Sequence[np.ndarray], progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """``(clips, features)`` float32: the ``pool`` activation of each clip's centre window."""
    rows = []
    for start in range(0, len(waveforms), WINDOW_BATCH):
        features = predictor.logmel(list(waveforms[start : start + WINDOW_BATCH]))
        with torch.inference_mode():
            _, activations = predictor.forward(features, return_activations=True)
        rows.append(activations[FEATURE_NODE].float().numpy())
        if progress is not None:
            progress(min(1.0, (start + WINDOW_BATCH) / len(waveforms)))
    if not rows:
        return np.zeros((0, predictor.model.head.in_features), dtype=np.float32)
    return np.concatenate(rows).astype(np.float32)


def _check(features: np.ndarray, dims: int | None = None) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or (dims is not None and features.shape[1] != dims):
        expected = f"(clips, {dims})" if dims is not None else "(clips, features)"
        raise EmbeddingError(f"features must have the shape {expected}, not {features.shape}")
    if not np.isfinite(features).all():
        raise EmbeddingError("features contain NaN or infinite values")
    return features


@dataclass(frozen=True)
class Projection:
    """A fitted 2-D PCA: ``(x - mean) @ components.T``; ``explained`` is each axis's share of variance."""

    mean: np.ndarray  # (features,)
    components: np.ndarray  # (2, features), unit rows
    explained: np.ndarray  # (2,)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``(clips, 2)`` coordinates of any clips, with the transform fitted on the reference clips."""
        single = np.ndim(features) == 1
        points = _check(np.atleast_2d(features), self.mean.shape[0])
        coordinates = (points - self.mean) @ self.components.T
        return coordinates[0] if single else coordinates


def fit_pca(features: np.ndarray) -> Projection:
    """PCA by SVD of the centred features; each axis's sign is fixed (its largest loading positive)
    so that rebuilding the map from the same features never mirrors it."""
    data = _check(features)
    if data.shape[0] < 3:
        raise EmbeddingError(f"a map needs at least 3 clips, not {data.shape[0]}")
    mean = data.mean(axis=0)
    _, singular, vt = np.linalg.svd(data - mean, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.argmax(np.abs(components), axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    variance = singular**2
    total = variance.sum()
    explained = variance[:2] / total if total > 0 else np.zeros(2)
    if components.shape[0] < 2:  # one feature: the second axis is empty
        components = np.vstack([components, np.zeros_like(components)])
        explained = np.append(explained, 0.0)
    return Projection(mean, components, explained)


def cosine_similarities(query: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Cosine of one feature vector with each row; a zero vector is similar to nothing (0)."""
    rows = _check(features)
    vector = _check(np.atleast_2d(query), rows.shape[1])[0]
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(vector)
    dots = rows @ vector
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def nearest(query: np.ndarray, features: np.ndarray, k: int = 5, exclude: int | None = None) -> list[tuple[int, float]]:
    """``(row, cosine)`` of the ``k`` most similar rows, most similar first (ties keep row order);
    ``exclude`` drops one row (the query itself when it is one of the reference clips)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    similarities = cosine_similarities(query, features)
    order = [int(i) for i in np.argsort(-similarities, kind="stable") if i != exclude]
    return [(i, float(similarities[i])) for i in order[:k]]


TSNE_PERPLEXITY = 15.0
TSNE_ITERATIONS = 750
PLACE_NEIGHBOURS = 8


def _affinities(distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian affinities whose entropy is log(perplexity) (binary search on the precision)."""
    n = distances.shape[0]
    affinities = np.zeros((n, n))
    target = np.log(perplexity)
    for i in range(n):
        others = np.delete(distances[i], i) - np.delete(distances[i], i).min()
        low, high, beta = 0.0, np.inf, 1.0
        for _ in range(64):
            row = np.exp(-others * beta)
            row /= row.sum()
            entropy = -(row * np.log(row + 1e-12)).sum()
            if abs(entropy - target) < 1e-5:
                break
            if entropy > target:  # too flat: sharpen
                low, beta = beta, beta * 2 if high == np.inf else (beta + high) / 2
            else:
                high, beta = beta, (beta + low) / 2
        affinities[i, np.arange(n) != i] = row
    return affinities


def tsne(features: np.ndarray, perplexity: float = TSNE_PERPLEXITY, iterations: int = TSNE_ITERATIONS,
         seed: int = 0) -> np.ndarray:  # fmt: skip
    """``(clips, 2)`` t-SNE of the rows under cosine distance: exact gradients (a few hundred clips),
    early exaggeration, momentum and per-coordinate gains as in van der Maaten's reference code;
    seeded, so a rebuild draws the same map. The perplexity shrinks for small sets (at most n/3)."""
    data = _check(features)
    n = data.shape[0]
    if n < 4:
        raise EmbeddingError(f"a t-SNE map needs at least 4 clips, not {n}")
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    unit = np.divide(data, norms, out=np.zeros_like(data), where=norms > 0)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    p = _affinities(distances, min(perplexity, (n - 1) / 3))
    p = np.maximum((p + p.T) / (2 * n), 1e-12)
    rng = np.random.default_rng(seed)
    y = rng.normal(scale=1e-4, size=(n, 2))
    velocity, gains = np.zeros_like(y), np.ones_like(y)
    for step in range(iterations):
        exaggeration, momentum = (12.0, 0.5) if step < 250 else (1.0, 0.8)
        diff = y[:, None, :] - y[None, :, :]  # (n, n, 2)
        kernel = 1.0 / (1.0 + (diff**2).sum(axis=-1))
        np.fill_diagonal(kernel, 0.0)
        q = kernel / kernel.sum()
        gradient = 4.0 * (((exaggeration * p - q) * kernel)[:, :, None] * diff).sum(axis=1)
        gains = np.where(np.sign(gradient) != np.sign(velocity), gains + 0.2, gains * 0.8).clip(0.01)
        velocity = momentum * velocity - 200.0 * gains * gradient
        y = y + velocity
        y -= y.mean(axis=0)
    return y


def place(query: np.ndarray, features: np.ndarray, coordinates: np.ndarray, k: int = PLACE_NEIGHBOURS,
          exclude: int | None = None) -> np.ndarray:  # fmt: skip
    """Where a new clip goes on a fitted t-SNE map without re-fitting it: the mean of its ``k`` most
    similar reference clips' positions, weighted by (positive) cosine similarity. Left out of the map
    one at a time, the shipped reference clips land within 0.26 map standard deviations (median) of
    their own t-SNE position."""
    found = nearest(query, features, k, exclude)
    weights = np.array([max(similarity, 0.0) for _, similarity in found])
    rows = [row for row, _ in found]
    if weights.sum() <= 0:  # similar to nothing: the centre of its nearest clips
        weights = np.ones(len(rows))
    return (weights[:, None] * np.asarray(coordinates)[rows]).sum(axis=0) / weights.sum()


@dataclass(frozen=True)
class ReferenceClips:
    """The clips a map is made of: ESC-50 names (without extension), true classes and features,
    for the checkpoint whose ``checkpoint_identity`` is ``checkpoint``."""

    names: tuple[str, ...]
    targets: np.ndarray  # (clips,) class indices
    features: np.ndarray  # (clips, features) float32
    checkpoint: str
    layout: np.ndarray | None = None  # (clips, 2) their t-SNE map, computed once

    def __post_init__(self) -> None:
        features = _check(self.features)
        if not len(self.names) == len(self.targets) == features.shape[0]:
            raise EmbeddingError(
                f"{len(self.names)} names, {len(self.targets)} classes and {features.shape[0]} feature rows"
            )
        if self.layout is not None and np.shape(self.layout) != (features.shape[0], 2):
            raise EmbeddingError(f"the layout has the shape {np.shape(self.layout)}, not ({features.shape[0]}, 2)")

    def save(self, path: str | os.PathLike) -> None:
        """A compressed ``.npz`` of plain arrays (features in float16: cosines move by < 1e-3)."""
        np.savez_compressed(
            path, names=np.asarray(self.names), targets=np.asarray(self.targets, dtype=np.int16),
            features=self.features.astype(np.float16), checkpoint=np.asarray(self.checkpoint),
            **({} if self.layout is None else {"layout": np.asarray(self.layout, dtype=np.float32)}),
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceClips:
        """Read a saved set (no pickles: ``allow_pickle=False``); a damaged file raises ``EmbeddingError``."""
        try:
            with np.load(path, allow_pickle=False) as data:
                layout = data["layout"].astype(np.float64) if "layout" in data.files else None
                return cls(tuple(str(n) for n in data["names"]), data["targets"].astype(np.int64),
                           data["features"].astype(np.float32), str(data["checkpoint"]), layout)  # fmt: skip
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise EmbeddingError(f"cannot read the embedding file {path}: {error}") from error
