"""Two models over the same clips: where their predictions agree and how alike each stage's
representation is (linear CKA, ``audiocnn.cka``), stage by stage.

``survey`` runs one model over a set of clips once and keeps only what any comparison needs:
each stage's ``n x n`` Gram matrix and the clips' probabilities. Comparing two surveyed models
(``compare``) then costs no forward pass, so a survey is cached per checkpoint and serves every
pair it takes part in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .cka import cka_matrix, gram
from .explain import CAM_LAYERS
from .inference import Predictor

BATCH = 4
"""Clips per forward pass in a survey: every node's activations of a batch are alive at once
(about 61 MB per clip for the shipped model), so a small batch bounds the survey's peak."""


def stage_nodes(activation_names: Sequence[str]) -> list[str]:
    """The stage outputs a model has, input side first: the stem, each residual stage, the pooled embedding."""
    names = set(activation_names)
    return [name for name in (*CAM_LAYERS, "pool") if name in names]


@dataclass(frozen=True)
class Survey:
    """One model over ``n`` clips: each stage's Gram matrix and the clips' probabilities."""

    stages: tuple[str, ...]
    grams: dict[str, np.ndarray]  # stage -> (n, n) float64
    probabilities: np.ndarray  # (n, classes), as ``Predictor.predict`` scores (all test-time views)
    class_names: tuple[str, ...]

    @property
    def top_labels(self) -> list[str]:
        return [self.class_names[i] for i in np.argmax(self.probabilities, axis=1)]


def survey(
    predictor: Predictor,
    waveforms: Sequence[np.ndarray],
    progress: Callable[[float], None] | None = None,
) -> Survey:
    """Run ``waveforms`` (at the model's rate) through the model once, in batches of ``BATCH``.

    Stage outputs are stored in bf16 until every clip is in (the Gram needs every pair of clips):
    for the shipped model that is 1.27 M values per clip, 254 MB for 100 clips, freed on return;
    with one batch's activations (``BATCH``) the survey peaks near 0.5 GB above the loaded model.
    Under bf16 autocast they are computed in bf16 anyway; in fp32 the rounding (2**-8 relative)
    moves a CKA by far less than its third decimal.
    """
    if len(waveforms) < 2:
        raise ValueError("a survey needs at least two clips (CKA compares clips with each other)")
    stores: dict[str, torch.Tensor] = {}
    probabilities = []
    for start in range(0, len(waveforms), BATCH):
        batch = list(waveforms[start : start + BATCH])
        features = predictor.logmel(batch)
        with torch.inference_mode():
            _, activations = predictor.forward(features, return_activations=True)
            if not stores:
                for node in stage_nodes(list(activations)):
                    width = activations[node][0].numel()
                    stores[node] = torch.empty((len(waveforms), width), dtype=torch.bfloat16)
            for node, store in stores.items():
                store[start : start + len(batch)] = activations[node].reshape(len(batch), -1).to(torch.bfloat16)
        probabilities.extend(prediction.probabilities for prediction in predictor.predict_batch(batch))
        if progress is not None:
            progress(min(1.0, (start + len(batch)) / len(waveforms)))
    grams = {node: gram(store) for node, store in stores.items()}
    return Survey(tuple(stores), grams, np.stack(probabilities), tuple(predictor.class_names))


@dataclass(frozen=True)
class Comparison:
    """Model A against model B over the same labelled clips."""

    stages_a: tuple[str, ...]
    stages_b: tuple[str, ...]
    cka: np.ndarray  # (stages of A, stages of B)
    agreement: float  # share of clips whose top class is the same under both
    per_class: dict[str, float]  # true class -> share of its clips with the same top class under both
    accuracy_a: float
    accuracy_b: float
    disagreements: list[tuple[int, str, str]]  # (clip index, A's top class, B's top class)


def compare(a: Survey, b: Survey, labels: Sequence[str]) -> Comparison:
    """Agreement of the two models' top classes (overall and per true class) and CKA of every stage pair."""
    count = len(labels)
    if a.probabilities.shape[0] != count or b.probabilities.shape[0] != count:
        raise ValueError(f"both surveys must cover the same {count} clips")
    top_a, top_b = a.top_labels, b.top_labels
    same = np.array([x == y for x, y in zip(top_a, top_b)])
    truth = np.asarray(labels)
    per_class = {label: float(same[truth == label].mean()) for label in dict.fromkeys(labels)}
    return Comparison(
        stages_a=a.stages,
        stages_b=b.stages,
        cka=cka_matrix([a.grams[s] for s in a.stages], [b.grams[s] for s in b.stages]),
        agreement=float(same.mean()),
        per_class=per_class,
        accuracy_a=float(np.mean([x == y for x, y in zip(top_a, labels)])),
        accuracy_b=float(np.mean([x == y for x, y in zip(top_b, labels)])),
        disagreements=[(i, top_a[i], top_b[i]) for i in np.flatnonzero(~same)],
    )
