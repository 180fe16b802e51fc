"""Measure a checkpoint on ESC-50 folds: ``python -m training.evaluate --data-dir D --folds 5``.

Clips go through the serving path itself (``Predictor.load`` + ``Predictor.predict_batch``:
the same decoding, centre window and log-mel as the app and the CLI), so the reported
accuracy is the accuracy users get, not that of a parallel evaluation pipeline.
``--json`` prints the metrics; ``--output`` writes them into the metrics file the dashboard reads
(``assets/metrics.json``), keeping that file's other keys (cross-validation, explanation and
robustness tables, written by their own commands);
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

from audiocnn import evaluation as scoring
from audiocnn.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from audiocnn.evaluation import (  # noqa: F401 (re-exported for cross-validation and the tests)
    BATCH_SIZE,
    CLIPS_KEY,
    TOP_K,
    EvaluationError,
    check_class_names,
)  # fmt: skip
from audiocnn.inference import TEST_TIME_VIEWS, Predictor
from audiocnn.labels import display_name

from .data import FOLDS, Clip, DatasetError


def evaluate(predictor: Predictor, clips: list[Clip], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """``audiocnn.evaluation.evaluate`` with a progress bar on the terminal."""
    with tqdm(total=len(clips), desc="evaluating", unit="clip", leave=False, disable=None) as bar:
        return scoring.evaluate(predictor, clips, batch_size, _progress(bar))


def _progress(bar: tqdm):
    """A scoring progress callback ``(done, total)`` that moves a terminal bar."""

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def update_key(path: Path, key: str, value: Any) -> None:
    """Set one top-level key of a metrics file in place: every other key stays as it was."""
    update_keys(path, {key: value})


def update_keys(path: Path, values: dict[str, Any]) -> None:
    """Set these top-level keys of a metrics file in place (atomically): every other key stays as it was."""
    document = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not isinstance(document, dict):
        raise EvaluationError(f"{path} does not hold a JSON object")
    document.update(values)
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


def add_clip_options(parser: argparse.ArgumentParser, verb: str = "score", folds: tuple[int, ...] = (5,)) -> None:
    """``--data-dir`` and ``--folds``, as every command that scores ESC-50 clips spells them."""
    default = "all" if tuple(folds) == FOLDS else " ".join(map(str, folds))
    parser.add_argument("--data-dir", type=Path, required=True, help="ESC-50 folder (meta/esc50.csv + audio/)")
    parser.add_argument("--folds", type=int, nargs="+", default=list(folds),
                        help=f"folds to {verb} (default: {default})")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    add_clip_options(parser, "evaluate on")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the metrics into this file (its other keys are kept)"
    )
    parser.add_argument(
        "--update-clips",
        type=Path,
        default=None,
        metavar="METRICS",
        help=f"set only the per-clip key ({CLIPS_KEY!r}) of this metrics file, in place",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="clips per forward pass")
    parser.add_argument(
        "--views",
        type=int,
        default=TEST_TIME_VIEWS,
        help=f"time-rolled views averaged per clip (default: {TEST_TIME_VIEWS}, as the app and CLI)",
    )
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
    trained_on = set(predictor.checkpoint.metadata.get("train_folds") or []) & set(args.folds)
    if trained_on:
        print(f"warning: the checkpoint was trained on fold(s) {sorted(trained_on)}; this accuracy is not a "
              "held-out score", file=sys.stderr)  # fmt: skip
    label = _checkpoint_label(args.checkpoint)
    with tqdm(desc="evaluating", unit="clip", leave=False, disable=None) as bar:
        return scoring.evaluate_folds(predictor, args.data_dir, args.folds, label, max(1, args.batch_size),
                                      _progress(bar))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (CheckpointError, DatasetError, EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    updates = [(args.output, result), (args.update_clips, {CLIPS_KEY: result[CLIPS_KEY]})]
    for path, values in updates:
        if path is None:
            continue
        try:
            update_keys(path, values)
        except (OSError, ValueError, EvaluationError) as error:  # json.JSONDecodeError is a ValueError
            print(f"error: cannot update {path}: {error}", file=sys.stderr)
            return 2
    print(json.dumps(result, ensure_ascii=False) if args.json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
