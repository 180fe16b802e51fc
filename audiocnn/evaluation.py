"""Scoring a checkpoint on ESC-50 clips: the confusion matrix and the metrics document.

One implementation for ``python -m training.evaluate``, cross-validation and the dashboard's
"compute the held-out evaluation": clips go through the serving path itself
(``Predictor.load`` + ``Predictor.predict_batch``: the same decoding, centre window and
log-mel as the app and the CLI), so the reported accuracy is the accuracy users get.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .audio import AudioError
from .esc50 import FOLDS, Clip, class_names_from_metadata, read_metadata, select_folds
from .inference import TEST_TIME_VIEWS, Predictor

BATCH_SIZE = 32
"""Clips decoded and classified together: bounds memory while keeping the model busy."""


def run_facts(metadata: dict[str, Any]) -> dict[str, Any]:
    """The training record's plain entries (numbers, strings, lists of them): what a metrics file copies
    so that a reader, and the app's check that metrics and model belong together, know which run made
    the model. Nested entries (recipe, history, initialised_from, lineage) stay in the checkpoint."""

    def plain(value: Any) -> bool:
        if isinstance(value, list):
            return all(isinstance(item, (bool, int, float, str)) for item in value)
        return isinstance(value, (bool, int, float, str)) or value is None

    return {key: value for key, value in metadata.items() if plain(value)}


TOP_K = 5
"""Classes (with their probabilities) recorded per clip: enough to say what a wrong clip was taken for."""
CLIPS_KEY = "held_out_clips"
"""The metrics key of the per-clip records (the Model page's confusions you can hear)."""


class EvaluationError(RuntimeError):
    """The checkpoint and the dataset cannot be evaluated together."""


def score_clips(
    predictor: Predictor,
    clips: Sequence[Clip],
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    top_k: int = TOP_K,
) -> list[dict[str, Any]]:
    """One record per clip, in the clips' order: ``{"clip": file name without extension, "target":
    true class index, "top": [[class index, probability], ...]}`` for its ``top_k`` classes, most
    likely first. The confusion matrix is derived from these, so the two can never disagree.

    ``progress(done, total)`` is called after every batch (clips scored so far, all clips).
    """
    records = []
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        waveforms = []
        for clip in batch:
            try:
                waveforms.append(predictor.load(clip.path))
            except AudioError as error:
                raise EvaluationError(f"cannot decode {clip.path}: {error}") from error
        for clip, prediction in zip(batch, predictor.predict_batch(waveforms)):
            top = [[int(i), round(float(prediction.probabilities[i]), 4)] for i in prediction.order[:top_k]]
            records.append({"clip": clip.path.stem, "target": clip.target, "top": top})
        if progress is not None:
            progress(start + len(batch), len(clips))
    return records


def confusion_from_records(records: Sequence[dict[str, Any]], num_classes: int) -> np.ndarray:
    """Rows true class, columns the top class of each record."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for record in records:
        confusion[record["target"], record["top"][0][0]] += 1
    return confusion


def evaluate(
    predictor: Predictor,
    clips: Sequence[Clip],
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Confusion matrix ``(classes, classes)``: rows are true classes, columns predicted ones."""
    return confusion_from_records(score_clips(predictor, clips, batch_size, progress), len(predictor.class_names))


def check_class_names(predictor: Predictor, dataset_names: list[str]) -> None:
    """Refuse to score a model whose output order is not the dataset's target order."""
    if list(predictor.class_names) != list(dataset_names):
        differing = [
            f"{i}: model {m!r} vs data {d!r}"
            for i, (m, d) in enumerate(zip(predictor.class_names, dataset_names)) if m != d
        ]  # fmt: skip
        detail = "; ".join(differing[:3]) or (
            f"model has {len(predictor.class_names)} classes, data has {len(dataset_names)}"
        )
        raise EvaluationError(f"the checkpoint's class names do not match the dataset's ({detail})")


def metrics(
    confusion: np.ndarray,
    class_names: list[str] | tuple[str, ...],
    checkpoint: str,
    folds: list[int],
    metadata: dict[str, Any],
    views: int = TEST_TIME_VIEWS,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The metrics document (schema shared with the dashboard's model page); ``records`` (from
    ``score_clips``) add the per-clip key."""
    totals = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(class_names)
    }
    total = int(confusion.sum())
    document = {
        "checkpoint": checkpoint,
        "folds": list(folds),
        "views": views,
        "num_clips": total,
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
        "history": list(metadata.get("history") or []),
        "training": run_facts(metadata),
    }
    if records is not None:
        document[CLIPS_KEY] = clips_document(records, checkpoint, folds, views)
    return document


def clips_document(records: list[dict[str, Any]], checkpoint: str, folds: list[int], views: int) -> dict[str, Any]:
    """The per-clip key: the records and what they were scored with."""
    return {"checkpoint": checkpoint, "folds": list(folds), "views": views, "top_k": TOP_K, "clips": records}


def evaluate_folds(
    predictor: Predictor,
    data_dir: str | os.PathLike,
    folds: Sequence[int],
    label: str,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The metrics document of ``predictor`` on ``folds`` of the ESC-50 copy at ``data_dir``.

    Refuses (``EvaluationError``/``DatasetError``) a model whose classes are not the dataset's, in
    the dataset's order. ``label`` names the checkpoint in the document.
    """
    clips = read_metadata(data_dir)
    check_class_names(predictor, class_names_from_metadata(clips))
    selected = select_folds(clips, list(folds))
    records = score_clips(predictor, selected, batch_size, progress)
    confusion = confusion_from_records(records, len(predictor.class_names))
    return metrics(confusion, predictor.class_names, label, list(folds), predictor.checkpoint.metadata,
                   predictor.views, records)  # fmt: skip


def held_out_folds(metadata: dict[str, Any], all_folds: Sequence[int] = FOLDS) -> list[int]:
    """The folds a checkpoint was not trained on: its recorded test folds, else every fold it did not
    see in training or validation (empty when it saw them all)."""
    seen = set(metadata.get("train_folds") or []) | set(metadata.get("val_folds") or [])
    recorded = [int(f) for f in metadata.get("test_folds") or [] if int(f) not in seen]
    return recorded or [f for f in all_folds if f not in seen]
