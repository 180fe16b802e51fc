"""5-fold cross-validation of the training recipe, run locally fold after fold.

``run`` trains one model per held-out fold (skipping folds whose schedule is done, and
resuming interrupted ones), so it can be spread over several sessions. ``summarize``
scores each fold's checkpoint on its own held-out fold and stores the per-fold
accuracies and their mean under ``"cv"`` in a metrics file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from audiocnn.checkpoint import CheckpointError, read_payload
from audiocnn.inference import Predictor

from .data import FOLDS, DatasetError, class_names_from_metadata, read_metadata, select_folds
from .evaluate import EvaluationError, check_class_names, evaluate
from .loop import ResumeError, train
from .options import add_recipe_options, fold_start, recipe_settings
from .recipe import FOLD_KEYS, RECIPE_KEYS, TrainConfig, comparable_recipe

SHARED_KEYS = tuple(key for key in RECIPE_KEYS if key not in FOLD_KEYS)
"""Settings every fold of one cross-validation must share (only the held-out fold differs)."""


class CrossValidationError(ValueError):
    """Fold results that cannot be summarised together."""


def fold_config(base: TrainConfig, test_fold: int, out_dir: Path) -> TrainConfig:
    """The recipe of ``base`` with ``test_fold`` held out and every other fold trained on; a start
    checkpoint (``init_from``) must name each fold's own with ``{fold}``."""
    return replace(
        base, out_dir=str(out_dir / f"fold{test_fold}"), test_folds=(test_fold,), val_folds=(),
        train_folds=tuple(f for f in FOLDS if f != test_fold),
        init_from=fold_start(base.init_from or "", test_fold, several_folds=True),
    )  # fmt: skip


def schedule_done(metadata: dict[str, Any]) -> bool:
    """Whether a checkpoint's training record shows its whole schedule trained."""
    return metadata.get("epochs_trained", 0) >= metadata.get("epochs", float("inf"))


def fold_finished(run_dir: Path) -> bool:
    """Whether the fold's served checkpoint completed its schedule.

    Judged from ``best.pt`` itself (what ``summarize`` scores), not from the resume state,
    so a fold trained elsewhere (Modal, a GPU machine) counts once its checkpoint is copied in.
    """
    best = run_dir / "best.pt"
    return best.is_file() and schedule_done(read_payload(best)["metadata"])


def run(base: TrainConfig, out_dir: Path, folds: list[int]) -> None:
    for fold in folds:
        config = fold_config(base, fold, out_dir)
        if fold_finished(Path(config.out_dir)):
            print(f"fold {fold}: already trained, skipping")
            continue
        print(f"fold {fold}: training on folds {config.train_folds}")
        train(config, resume=True)


def summarize(out_dir: Path, data_dir: str) -> dict[str, Any]:
    """Accuracy of every finished fold on its held-out fold, and their mean.

    A mean over folds trained with different recipes would describe no model, so folds whose
    settings differ from the first finished fold's are refused (``CrossValidationError``), and so
    is a fold whose outputs are not in the dataset's class order (``EvaluationError``).
    """
    clips = read_metadata(data_dir)
    class_names = class_names_from_metadata(clips)
    accuracies: dict[str, float] = {}
    recipe: dict[str, Any] | None = None
    for fold in FOLDS:
        best = out_dir / f"fold{fold}" / "best.pt"
        if not best.is_file():
            continue
        predictor = Predictor.from_checkpoint(best)
        if not schedule_done(predictor.checkpoint.metadata):
            continue
        saved = comparable_recipe(predictor.checkpoint.metadata.get("recipe", {}))
        fold_recipe = {key: saved.get(key) for key in SHARED_KEYS}
        if recipe is None:
            recipe = fold_recipe
        elif fold_recipe != recipe:
            changed = ", ".join(key for key in SHARED_KEYS if fold_recipe[key] != recipe[key])
            raise CrossValidationError(f"fold {fold} was trained with other settings ({changed}) than the "
                                       "folds before it; cross-validate one recipe per --out folder")  # fmt: skip
        check_class_names(predictor, class_names)
        confusion = evaluate(predictor, select_folds(clips, [fold]))
        accuracies[str(fold)] = float(np.trace(confusion) / confusion.sum())
        print(f"fold {fold}: {accuracies[str(fold)]:.4f}")
    values = list(accuracies.values())
    return {
        "folds": accuracies,
        "mean": float(np.mean(values)) if values else None,
        "std": float(np.std(values)) if values else None,
        "complete": len(values) == len(FOLDS),
        "recipe": recipe,
    }


def base_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    """The recipe the ``run`` options ask for; settings that check themselves fail as usage errors."""
    try:
        config = TrainConfig(data_dir=args.data_dir, out_dir=str(args.out), cache_dir=str(args.out / "cache"),
                             **recipe_settings(args))  # fmt: skip
        fold_config(config, args.folds[0], args.out)  # a start without {fold} is refused before any fold trains
        return config
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.crossval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="train the held-out-fold models")
    run_parser.add_argument("--folds", type=int, nargs="+", default=list(FOLDS))
    add_recipe_options(run_parser)
    summary_parser = sub.add_parser("summarize", help="evaluate finished folds, update a metrics file")
    summary_parser.add_argument("--metrics", type=Path, help="metrics JSON to add the 'cv' entry to")
    for sub_parser in (run_parser, summary_parser):
        sub_parser.add_argument("--data-dir", required=True)
        sub_parser.add_argument("--out", type=Path, required=True, help="folder holding fold1 ... fold5")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run(base_config(args, run_parser), args.out, args.folds)
            return 0
        summary = summarize(args.out, args.data_dir)
    except (CheckpointError, CrossValidationError, DatasetError, EvaluationError, ResumeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    if args.metrics:
        document = json.loads(args.metrics.read_text()) if args.metrics.is_file() else {}
        document["cv"] = summary
        args.metrics.write_text(json.dumps(document, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
