"""What the model thinks a clip sounds like: pooled penultimate features, a 2-D map and neighbours.

The feature of a clip is the network's ``pool`` activation (the vector the linear head reads), of
the same unrolled view ``Predictor.analyze`` captures, so a clip analysed in the app and the same
clip in the map have one embedding. The map is a PCA fitted once on the reference clips (the
held-out fold); a new clip is *projected* with that fitted transform, never re-fitted, so adding
a clip cannot move the others. Neighbours are ranked by cosine similarity in the full feature
space (512-D for the shipped model): the 2-D map is for looking, not for measuring.
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


@dataclass(frozen=True)
class ReferenceClips:
    """The clips a map is made of: ESC-50 names (without extension), true classes and features,
    for the checkpoint whose ``checkpoint_identity`` is ``checkpoint``."""

    names: tuple[str, ...]
    targets: np.ndarray  # (clips,) class indices
    features: np.ndarray  # (clips, features) float32
    checkpoint: str

    def __post_init__(self) -> None:
        features = _check(self.features)
        if not len(self.names) == len(self.targets) == features.shape[0]:
            raise EmbeddingError(
                f"{len(self.names)} names, {len(self.targets)} classes and {features.shape[0]} feature rows"
            )

    def save(self, path: str | os.PathLike) -> None:
        """A compressed ``.npz`` of plain arrays (features in float16: cosines move by < 1e-3)."""
        np.savez_compressed(
            path, names=np.asarray(self.names), targets=np.asarray(self.targets, dtype=np.int16),
            features=self.features.astype(np.float16), checkpoint=np.asarray(self.checkpoint),
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceClips:
        """Read a saved set (no pickles: ``allow_pickle=False``); a damaged file raises ``EmbeddingError``."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(tuple(str(n) for n in data["names"]), data["targets"].astype(np.int64),
                           data["features"].astype(np.float32), str(data["checkpoint"]))  # fmt: skip
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise EmbeddingError(f"cannot read the embedding file {path}: {error}") from error
