"""Accuracy under the damage real recordings bring: ``python -m training.robustness --data-dir D``.

Each clip of the chosen folds is decoded once, then every condition of
``audiocnn.perturb.EVALUATION_CONDITIONS`` (gain steps, coloured noise at several SNRs, phone and
laptop bands, rooms, MP3, time shifts) is applied to the whole clip and scored through the serving
path (``Predictor.predict_batch``: the app's centre window, log-mel and test-time views). Random
conditions use the clip's index as seed, so a table is reproducible and two models see the very same
noise. Several ``--checkpoint``s are scored in one run on identical inputs: the previous model is the
baseline the README and model card compare against.

Each condition reports accuracy and its drop from clean with a paired bootstrap 95 % interval over
clips (the same resampled clips for both), since a one-point drop on 400 clips is within chance.
``--output`` stores the table under ``robustness`` in a metrics file, leaving its other keys as they are.
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
from audiocnn.checkpoint import CheckpointError
from audiocnn.inference import Predictor
from audiocnn.perturb import EVALUATION_CONDITIONS, Perturbation, find_condition

from .data import DatasetError, class_names_from_metadata, read_metadata, select_folds
from .evaluate import BATCH_SIZE, EvaluationError, add_clip_options, check_class_names, update_key

METRICS_KEY = "robustness"
BOOTSTRAP_SAMPLES = 2000


def correct_under(
    predictor: Predictor,
    waveforms: list[np.ndarray],
    targets: np.ndarray,
    condition: Perturbation,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Whether each clip's top class is its target once ``condition`` is applied (seed = clip index)."""
    rate = predictor.feature_config.sample_rate
    correct = np.zeros(len(waveforms), dtype=bool)
    for start in range(0, len(waveforms), batch_size):
        batch = [condition.apply(w, rate, seed=start + i) for i, w in enumerate(waveforms[start : start + batch_size])]
        tops = [p.top_index for p in predictor.predict_batch(batch)]
        correct[start : start + len(batch)] = np.asarray(tops) == targets[start : start + len(batch)]
    return correct


def paired_change_interval(
    clean: np.ndarray, perturbed: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % bootstrap interval of ``accuracy(perturbed) - accuracy(clean)``, resampling clips jointly."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(clean), size=(samples, len(clean)))
    changes = perturbed[picks].mean(axis=1) - clean[picks].mean(axis=1)
    low, high = np.percentile(changes, [2.5, 97.5])
    return float(low), float(high)


def score_model(
    predictor: Predictor,
    waveforms: list[np.ndarray],
    targets: np.ndarray,
    conditions: tuple[Perturbation, ...] | list[Perturbation],
    batch_size: int = BATCH_SIZE,
) -> list[dict[str, Any]]:
    """One row per condition: accuracy, its change from clean (negative: lost) and that change's 95 % interval."""
    outcomes = {}
    for condition in tqdm(conditions, desc="conditions", unit="condition", leave=False, disable=None):
        outcomes[condition.name] = correct_under(predictor, waveforms, targets, condition, batch_size)
    clean = outcomes["clean"]
    rows = []
    for condition in conditions:
        correct = outcomes[condition.name]
        low, high = paired_change_interval(clean, correct)
        rows.append({
            "condition": condition.name,
            "family": condition.family,
            "accuracy": float(correct.mean()),
            "change": float(correct.mean() - clean.mean()),
            "change_95": [low, high],
        })  # fmt: skip
    return rows


def _points(share: float) -> str:
    """A change in accuracy as signed points; never "-0.0"."""
    return f"{round(share * 100, 1) + 0.0:+.1f}"


def format_table(result: dict[str, Any]) -> str:
    """Conditions down, models across: accuracy and, after clean, its change with a 95 % interval."""
    names = list(result["models"])
    lines = [f"folds {result['folds']}, {result['num_clips']} clips; change from clean in points "
             "[95 % paired bootstrap over clips]", ""]  # fmt: skip
    lines.append(f"{'condition':<26}" + "".join(f"{name[:30]:>32}" for name in names))
    rows = {name: {row["condition"]: row for row in result["models"][name]["conditions"]} for name in names}
    for condition in result["conditions"]:
        cells = []
        for name in names:
            row = rows[name][condition]
            cell = f"{row['accuracy'] * 100:5.1f} %"
            if condition != "clean":
                low, high = row["change_95"]
                cell += f" {_points(row['change']):>6} [{_points(low)}, {_points(high)}]"
            cells.append(f"{cell:>32}")
        lines.append(f"{condition:<26}" + "".join(cells))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.robustness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_clip_options(parser)
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=None,
        help="checkpoint to score; repeat to compare models on identical inputs (default: shipped)",
    )
    parser.add_argument(
        "--label", action="append", default=None, help="a name per --checkpoint for the table (default: the path)"
    )
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=None,
        help="condition names to score (default: all; 'clean' is always included)",
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N clips (a quick look)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="clips per forward pass")
    parser.add_argument("--output", type=Path, default=None, help="store the table under 'robustness' in this file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    checkpoints = args.checkpoint or [None]
    labels = args.label or [str(path) if path else "shipped" for path in checkpoints]
    if len(labels) != len(checkpoints):
        raise EvaluationError(f"{len(labels)} --label for {len(checkpoints)} --checkpoint; give one each")
    if len(set(labels)) != len(labels):
        raise EvaluationError("two models have the same label; give each --checkpoint its own --label")
    conditions = list(EVALUATION_CONDITIONS)
    if args.conditions:
        conditions = [find_condition(name) for name in ["clean", *(n for n in args.conditions if n != "clean")]]
    predictors = [Predictor.from_checkpoint(path) for path in checkpoints]
    all_clips = read_metadata(args.data_dir)
    for predictor in predictors:
        check_class_names(predictor, class_names_from_metadata(all_clips))
    clips = select_folds(all_clips, args.folds)[: args.limit]
    try:
        waveforms = [predictors[0].load(clip.path) for clip in clips]
    except AudioError as error:
        raise EvaluationError(f"cannot decode a clip: {error}") from error
    targets = np.asarray([clip.target for clip in clips])
    models = {}
    for label, path, predictor in zip(labels, checkpoints, predictors):
        rows = score_model(predictor, waveforms, targets, conditions, max(1, args.batch_size))
        models[label] = {"checkpoint": str(path) if path else "assets/model.pt", "conditions": rows}
    return {
        "folds": list(args.folds),
        "num_clips": len(clips),
        "conditions": [condition.name for condition in conditions],
        "models": models,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (CheckpointError, DatasetError, EvaluationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.output:
        update_key(args.output, METRICS_KEY, result)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
