"""Measure a checkpoint on ESC-50 folds: ``python -m training.evaluate --data-dir D --folds 5``.

Clips go through the serving path itself (``Predictor.load`` + ``Predictor.predict_batch``:
the same decoding, centre window and log-mel as the app and the CLI), so the reported
accuracy is the accuracy users get, not that of a parallel evaluation pipeline.
``--json``/``--output`` produce the metrics file the dashboard reads (``assets/metrics.json``);
``--update-clips assets/metrics.json`` sets only its per-clip records (``held_out_clips``: each
clip's true class and top classes), the Model page's confusions you can hear.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from audiocnn.audio import AudioError
from audiocnn.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from audiocnn.inference import TEST_TIME_VIEWS, Predictor
from audiocnn.labels import display_name

from .data import Clip, DatasetError, class_names_from_metadata, read_metadata, select_folds
from .recipe import run_facts

BATCH_SIZE = 32
"""Clips decoded and classified together: bounds memory while keeping the model busy."""

TOP_K = 5
"""Classes (with their probabilities) recorded per clip: enough to say what a wrong clip was taken for."""
CLIPS_KEY = "held_out_clips"
"""The metrics key of the per-clip records (the Model page's confusions you can hear)."""


class EvaluationError(RuntimeError):
    """The checkpoint and the dataset cannot be evaluated together."""


def evaluate(predictor: Predictor, clips: list[Clip], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Confusion matrix ``(classes, classes)``: rows are true classes, columns predicted ones."""
    return confusion_from_records(score_clips(predictor, clips, batch_size), len(predictor.class_names))


def score_clips(
    predictor: Predictor, clips: list[Clip], batch_size: int = BATCH_SIZE, top_k: int = TOP_K
) -> list[dict[str, Any]]:
    """One record per clip, in the clips' order: ``{"clip": file name without extension, "target":
    true class index, "top": [[class index, probability], ...]}`` for its ``top_k`` classes, most
    likely first. The confusion matrix is derived from these, so the two can never disagree."""
    records = []
    batches = range(0, len(clips), batch_size)
    for start in tqdm(batches, desc="evaluating", unit="batch", leave=False, disable=None):
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
    return records


def confusion_from_records(records: list[dict[str, Any]], num_classes: int) -> np.ndarray:
    """Rows true class, columns the top class of each record."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for record in records:
        confusion[record["target"], record["top"][0][0]] += 1
    return confusion


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


def update_key(path: Path, key: str, value: Any) -> None:
    """Set one top-level key of a metrics file in place: every other key stays as it was."""
    document = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not isinstance(document, dict):
        raise EvaluationError(f"{path} does not hold a JSON object")
    document[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(path)


def format_text(result: dict[str, Any]) -> str:
    """Readable report: overall and per-class accuracy, the confusion matrix, the top confusions."""
    names = result["class_names"]
    confusion = np.asarray(result["confusion"])
    lines = [
        f"checkpoint: {result['checkpoint']}",
        f"folds: {' '.join(map(str, result['folds']))}   clips: {result['num_clips']}   "
        f"views averaged per clip: {result.get('views', 1)}",
        f"accuracy: {result['accuracy'] * 100:.2f}%",
        "",
        "per-class accuracy (worst first):",
    ]
    scored = sorted(((acc, name) for name, acc in result["per_class"].items() if acc is not None))
    lines += [f"  {acc * 100:6.1f}%  {display_name(name)}" for acc, name in scored]
    lines += ["", "confusion matrix (rows: true class, columns: predicted class index):"]
    lines.append(" " * 26 + "".join(f"{j:>3d}" for j in range(len(names))))
    for i, name in enumerate(names):
        cells = "".join(f"{v:>3d}" if v else "  ." for v in confusion[i])
        lines.append(f"{i:>2d} {display_name(name)[:22]:<22} {cells}")
    off_diagonal = [(int(confusion[i, j]), i, j) for i in range(len(names)) for j in range(len(names))
                    if i != j and confusion[i, j]]  # fmt: skip
    if off_diagonal:
        lines += ["", "most frequent confusions (true -> predicted):"]
        for count, i, j in sorted(off_diagonal, key=lambda c: (-c[0], c[1], c[2]))[:10]:
            lines.append(f"  {count:3d}  {display_name(names[i])} -> {display_name(names[j])}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--data-dir", type=Path, required=True, help="ESC-50 folder (meta/esc50.csv + audio/)")
    parser.add_argument("--folds", type=int, nargs="+", default=[5], help="folds to evaluate on (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON metrics to this file")
    parser.add_argument("--update-clips", type=Path, default=None, metavar="METRICS",
                        help=f"set only the per-clip key ({CLIPS_KEY!r}) of this metrics file, in place")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="clips per forward pass")
    parser.add_argument("--views", type=int, default=TEST_TIME_VIEWS,
                        help=f"time-rolled views averaged per clip (default: {TEST_TIME_VIEWS}, as the app and CLI)")
    return parser


def _checkpoint_label(path: Path | None) -> str:
    """The path as given; the shipped default as its project-relative path, not this machine's."""
    if path is not None:
        return str(path)
    return str(DEFAULT_CHECKPOINT.relative_to(DEFAULT_CHECKPOINT.parent.parent))


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.views < 1:
        raise EvaluationError(f"--views must be at least 1, not {args.views}")
    predictor = Predictor.from_checkpoint(args.checkpoint, views=args.views)
    all_clips = read_metadata(args.data_dir)
    check_class_names(predictor, class_names_from_metadata(all_clips))
    clips = select_folds(all_clips, args.folds)
    metadata = predictor.checkpoint.metadata
    trained_on = set(metadata.get("train_folds") or []) & set(args.folds)
    if trained_on:
        print(f"warning: the checkpoint was trained on fold(s) {sorted(trained_on)}; this accuracy is not a "
              "held-out score", file=sys.stderr)  # fmt: skip
    records = score_clips(predictor, clips, max(1, args.batch_size))
    confusion = confusion_from_records(records, len(predictor.class_names))
    label = _checkpoint_label(args.checkpoint)
    return metrics(confusion, predictor.class_names, label, args.folds, metadata, args.views, records)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (CheckpointError, DatasetError, EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    document = json.dumps(result, ensure_ascii=False)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(document + "\n")
    if args.update_clips:
        try:
            update_key(args.update_clips, CLIPS_KEY, result[CLIPS_KEY])
        except (OSError, ValueError, EvaluationError) as error:  # json.JSONDecodeError is a ValueError
            print(f"error: cannot update {args.update_clips}: {error}", file=sys.stderr)
            return 2
    print(document if args.json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
