"""How faithful is each explanation? ``python -m training.explain_eval --data-dir D --folds 5``.

For every scored clip (the model window ``Predictor`` serves) and its predicted class, every
attribution method and Grad-CAM layer makes a map; each map gets its deletion curves
(``audiocnn.faithfulness``: most relevant first, least relevant first, a random order) and is heard
through the model (``audiocnn.listen``: does the kept part alone still give the class, does the
removed part lose it). The table gives each method's mean areas with their spread over clips, the
gap between the two orders, the margins over the random order, the fidelity rates and the cost of
one map, and names the method with the best gap among those that beat the random order in both
directions.

Clips are taken stratified: the first ``--per-class`` clips (by file name) of every class, visited
class by class in turn, so a run cut short by ``--max-minutes`` still covers the classes evenly; the
table says how many clips it scored. ``--store NAME --metrics FILE`` writes the table under
``explanations.NAME`` of the metrics file, leaving every other key as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from audiocnn import attribution, faithfulness, listen
from audiocnn.audio import AudioError
from audiocnn.checkpoint import CheckpointError
from audiocnn.inference import Predictor
from audiocnn.model import activation_tree

from .data import Clip, DatasetError, class_names_from_metadata, read_metadata, select_folds
from .evaluate import EvaluationError, add_clip_options, check_class_names, update_key

METRICS_KEY = "explanations"
REMOVALS = tuple(faithfulness.REMOVALS)
DIGITS = 4
"""Decimals stored: the spread over clips is in the second, and the metrics file stays small."""
REPORT_SHARE = 0.1
"""The deletion share the app's faithfulness sentence quotes (also printed here)."""


def stratified(clips: list[Clip], per_class: int) -> list[Clip]:
    """The first ``per_class`` clips of each class by file name, interleaved class by class."""
    by_class: dict[int, list[Clip]] = {}
    for clip in sorted(clips, key=lambda c: c.path.name):
        by_class.setdefault(clip.target, []).append(clip)
    classes = sorted(by_class)
    return [by_class[t][k] for k in range(per_class) for t in classes if k < len(by_class[t])]


def model_layers(predictor: Predictor) -> list[str]:
    return list(activation_tree(predictor.model_config))


def score_clip(predictor: Predictor, waveform: np.ndarray, keys: list[str], share: float) -> dict[str, Any]:
    """Every method's faithfulness, listening and cost on one clip's model window."""
    window = predictor._window(waveform)
    features = predictor.logmel(window)
    target = predictor.predict(window).top_index
    hop = predictor.feature_config.hop_length / predictor.feature_config.sample_rate
    row: dict[str, Any] = {"class": target, "methods": {}}
    for key in keys:
        started = time.perf_counter()
        relevance = attribution.attribute(predictor.forward, features, target, key, hop)
        seconds = time.perf_counter() - started
        curves = faithfulness.measure(predictor.forward, features, relevance, target, removals=REMOVALS)
        heard = listen.listen(predictor, window, relevance, target, share)
        row["methods"][key] = {
            **{
                removal: {
                    "most_first": c.area("most_first"),
                    "least_first": c.area("least_first"),
                    "random": c.area("random"),
                    "at_share": c.at(REPORT_SHARE),
                }
                for removal, c in curves.items()
            },
            "base": curves[REMOVALS[0]].base,
            "fidelity_in": heard.fidelity_in,
            "fidelity_out": heard.fidelity_out,
            "map_ms": 1000 * seconds,
        }
    return row


def _spread(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, np.float64)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    std = array.std(ddof=1) if len(array) > 1 else 0.0
    return {name: round(float(value), DIGITS) for name, value in
            (("mean", array.mean()), ("std", std), ("median", median), ("q1", q1), ("q3", q3))}  # fmt: skip


def summarise(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, dict[str, Any]]:
    """Per method: areas and gap with their spread over clips, margins over random, fidelity rates, cost."""
    table = {}
    for key in keys:
        scored = [row["methods"][key] for row in rows if key in row["methods"]]
        table[key] = {
            "clips": len(scored),
            **{removal: _areas([s[removal] for s in scored]) for removal in REMOVALS},
            "fidelity_in": round(float(np.mean([s["fidelity_in"] for s in scored])), DIGITS),
            "fidelity_out": round(float(np.mean([s["fidelity_out"] for s in scored])), DIGITS),
            "map_ms_median": round(float(np.median([s["map_ms"] for s in scored])), 1),
        }
    return table


def _areas(scored: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    most = [s["most_first"] for s in scored]
    least = [s["least_first"] for s in scored]
    rand = [s["random"] for s in scored]
    return {
        "most_first": _spread(most),
        "least_first": _spread(least),
        "random": _spread(rand),
        "gap": _spread([b - a for a, b in zip(most, least)]),
        "margin_most_first": _spread([r - a for a, r in zip(most, rand)]),  # > 0: falls faster than random
        "margin_least_first": _spread([b - r for b, r in zip(least, rand)]),  # > 0: holds better than random
    }


def choose_default(table: dict[str, dict[str, Any]], removal: str = attribution.SELECTION_REMOVAL) -> str:
    """The best mean gap under ``removal`` among methods that beat random in both orders under it
    (any method if none does). ``impute`` by default: under ``floor`` a random order scatters holes
    that lower the class by themselves (``faithfulness.REMOVALS``), which no ranking can beat."""

    def beats(t: dict[str, Any]) -> bool:
        return t["margin_most_first"]["mean"] > 0 and t["margin_least_first"]["mean"] > 0

    beating = [k for k, t in table.items() if beats(t[removal])]
    return max(beating or list(table), key=lambda k: table[k][removal]["gap"]["mean"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    predictor = Predictor.from_checkpoint(args.checkpoint)
    all_clips = read_metadata(args.data_dir)
    check_class_names(predictor, class_names_from_metadata(all_clips))
    clips = stratified(select_folds(all_clips, args.folds), args.per_class)
    available = {m.key for m in attribution.available(model_layers(predictor))}
    keys = [k for k in (args.methods or list(attribution.METHODS)) if k in available]
    if not keys:
        raise EvaluationError(f"none of the methods {args.methods} applies to this model")
    trained_on = set(predictor.checkpoint.metadata.get("train_folds") or []) & set(args.folds)
    deadline = time.monotonic() + 60 * args.max_minutes if args.max_minutes else None
    rows, started = [], time.monotonic()
    for number, clip in enumerate(clips, 1):
        if deadline is not None and rows and time.monotonic() > deadline:
            print(f"stopped after {len(rows)} of {len(clips)} clips (--max-minutes {args.max_minutes})",
                  file=sys.stderr)  # fmt: skip
            break
        try:
            waveform = predictor.load(clip.path)
        except AudioError as error:
            raise EvaluationError(f"cannot decode {clip.path}: {error}") from error
        row = score_clip(predictor, waveform, keys, args.keep)
        row.update({"file": clip.path.name, "true": clip.target})
        rows.append(row)
        print(f"[{number}/{len(clips)}] {clip.path.name} {time.monotonic() - started:.0f} s", file=sys.stderr)
    if not rows:
        raise EvaluationError("no clip was scored")
    table = summarise(rows, keys)
    return {
        "folds": list(args.folds),
        "held_out": not trained_on,
        "clips": len(rows),
        "clips_planned": len(clips),
        "per_class": args.per_class,
        "files": [row["file"] for row in rows],
        "explained": "the predicted class of each clip's model window",
        "shares": list(faithfulness.SHARES),
        "report_share": REPORT_SHARE,
        "keep_share": args.keep,
        "removals": dict(faithfulness.REMOVALS),
        "best": {removal: choose_default(table, removal) for removal in REMOVALS},
        "seconds": round(time.monotonic() - started, 1),
        "methods": table,
    }


def format_text(result: dict[str, Any]) -> str:
    """The table: areas (mean ± std over clips), gap, margins over random, fidelity rates, cost."""
    lines = [
        f"folds {result['folds']} ({'held out' if result['held_out'] else 'TRAINING folds of this model'}), "
        f"{result['clips']} clips ({result['per_class']} per class planned: {result['clips_planned']}), "
        f"keep share {result['keep_share']:.0%}, {result['seconds']:.0f} s",
        "deletion AUC: score relative to the clip's, mean over 0-50 % of cells deleted (mean ± std over clips)",
    ]
    for removal in REMOVALS:
        lines += [
            "",
            f"removal '{removal}': {result['removals'][removal]}",
            f"{'method':<22} {'most-first':>12} {'least-first':>12} {'random':>12} {'gap':>12} "
            f"{'vs rnd (most)':>14} {'vs rnd (least)':>14} {'fid-in':>7} {'fid-out':>7} {'ms/map':>7}",
        ]
        for key, t in result["methods"].items():
            a = t[removal]

            def cell(name: str, width: int = 12, a=a) -> str:
                return f"{a[name]['mean']:.2f} ± {a[name]['std']:.2f}".rjust(width)

            lines.append(
                f"{key:<22} {cell('most_first')} {cell('least_first')} {cell('random')} {cell('gap')} "
                f"{cell('margin_most_first', 14)} {cell('margin_least_first', 14)} {t['fidelity_in']:>7.0%} "
                f"{t['fidelity_out']:>7.0%} {t['map_ms_median']:>7.0f}"
            )
        lines.append(f"best gap among methods beating random in both orders: {result['best'][removal]}")
    return "\n".join(lines)


def format_markdown(result: dict[str, Any]) -> str:
    """The table as the README and the model card show it (mean ± std over clips)."""
    head = ("| method | top first (floor) | bottom first (floor) | random (floor) | gap (floor) "
            "| top first (imputed) | bottom first (imputed) | random (imputed) | gap (imputed) "
            "| fidelity-in | fidelity-out | ms / map |")  # fmt: skip
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for key, t in result["methods"].items():
        cells = [attribution.METHODS[key].label]
        for removal in REMOVALS:
            a = t[removal]
            cells += [f"{a[name]['mean']:.2f} ± {a[name]['std']:.2f}" for name in ("most_first", "least_first",
                                                                                    "random", "gap")]  # fmt: skip
        cells += [f"{t['fidelity_in']:.0%}", f"{t['fidelity_out']:.0%}", f"{t['map_ms_median']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def store(path: Path, name: str, result: dict[str, Any]) -> None:
    """Set ``explanations.<name>`` in the metrics file, every other key untouched (``evaluate.update_key``)."""
    document = json.loads(path.read_text()) if path.is_file() else {}
    update_key(path, METRICS_KEY, {**document.get(METRICS_KEY, {}), name: result})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.explain_eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    add_clip_options(parser)
    parser.add_argument("--per-class", type=int, default=8, help="clips per class (default 8: all of one fold)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=sorted(attribution.METHODS),
        help="methods to score (default: all the model has)",
    )
    parser.add_argument("--keep", type=float, default=listen.DEFAULT_KEEP, help="share kept when listening")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop starting clips after this long")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--store", default=None, help="name of the table under 'explanations' in --metrics")
    parser.add_argument("--metrics", type=Path, default=Path("assets/metrics.json"), help="metrics file to update")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.per_class < 1 or not 0 < args.keep < 1:
        print("error: --per-class must be at least 1 and --keep between 0 and 1", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (CheckpointError, DatasetError, EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.store:
        store(args.metrics, args.store, result)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_markdown(result) if args.markdown
          else format_text(result))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
