"""``python -m benchmarks.timeline_agreement --data-dir ../shared/esc50 --folds 5``: how close the fast timeline is.

Long recordings are made by joining ESC-50 clips of the given folds back to back (in a seeded random
order, each clip once), so most windows straddle two unrelated sounds: the hardest case for the
shared estimate. For each recording the exact timeline (every window on its own) and the fast one
(``Predictor.timeline``'s default) are computed in the same run; the report gives top-1 agreement per
window, the largest probability difference, the share of windows rescored on their own, and the
time of both (a ratio: the machine may be busy) and their work (log-mel frames through the
network). ``--sweep`` also prints, from the same exact and
shared results, the agreement each ``EXACT_MARGIN`` would give: choose it on folds 1-4, then score
fold 5 once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiocnn.audio import load_audio
from audiocnn.inference import Predictor
from audiocnn.shared_windows import shared_probabilities
from audiocnn.timeline import MAX_WINDOWS

SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def clip_paths(data_dir: Path, folds: list[int]) -> list[Path]:
    """Audio files of the given folds (the metadata names ``.wav``; this copy stores other extensions)."""
    audio = data_dir / "audio"
    by_stem = {path.stem: path for path in audio.iterdir()}
    lines = (data_dir / "meta" / "esc50.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [by_stem[Path(line.split(",")[0]).stem] for line in lines if int(line.split(",")[1]) in folds]


def recordings(
    predictor: Predictor, paths: list[Path], clips_each: int, seed: int, limit: int | None = None
) -> list[np.ndarray]:
    """Clips in a seeded random order, each once, ``clips_each`` to a recording (a shorter last one is dropped);
    at most ``limit`` recordings."""
    order = np.random.default_rng(seed).permutation(len(paths))
    rate = predictor.feature_config.sample_rate
    joined = []
    count = len(order) // clips_each if limit is None else min(limit, len(order) // clips_each)
    for first in range(0, count * clips_each, clips_each):
        joined.append(np.concatenate([load_audio(paths[i], rate) for i in order[first : first + clips_each]]))
    return joined


def compare(predictor: Predictor, waves: list[np.ndarray], max_windows: int | None) -> dict[str, Any]:
    """Exact and fast timelines of every recording, timed in the same run, and how they differ."""
    exact, fast, estimates = [], [], []
    seconds = {"exact": 0.0, "fast": 0.0}
    shared = rescored = frames = exact_frames = 0
    for wave in waves:
        start = time.perf_counter()
        exact.append(predictor.timeline_scan(wave, max_windows=max_windows, exact=True).run().probabilities)
        seconds["exact"] += time.perf_counter() - start
        start = time.perf_counter()
        scan = predictor.timeline_scan(wave, max_windows=max_windows)
        fast.append(scan.run().probabilities)
        seconds["fast"] += time.perf_counter() - start
        shared, rescored = shared + scan.shared, rescored + scan.rescored
        frames += scan.frames
        exact_frames += scan.total * predictor.views * predictor.feature_config.num_frames
        starts = (scan.result().starts * predictor.feature_config.sample_rate).round().astype(int).tolist()
        step = scan.batch  # the groups the scan estimated together
        estimates.append(np.concatenate([shared_probabilities(predictor, wave, starts[i : i + step])
                                         for i in range(0, len(starts), step)]))  # fmt: skip
    e, f, s = np.concatenate(exact), np.concatenate(fast), np.concatenate(estimates)
    top_two = np.sort(s, axis=1)[:, -2:]
    margin = top_two[:, 1] - top_two[:, 0]
    agree = s.argmax(1) == e.argmax(1)
    sweep = {f"{m:g}": {"agreement": float(np.where(margin < m, True, agree).mean()),
                        "rescored": float((margin < m).mean())} for m in SWEEP}  # fmt: skip
    return {
        "recordings": len(waves),
        "seconds_each": round(float(np.mean([w.shape[0] for w in waves])) / predictor.feature_config.sample_rate, 1),
        "windows": len(e),
        "agreement": float((f.argmax(1) == e.argmax(1)).mean()),
        "max_probability_difference": float(np.abs(f - e).max()),
        "mean_largest_difference": float(np.abs(f - e).max(axis=1).mean()),
        "shared_windows": shared,
        "rescored_windows": rescored,
        "exact_seconds": seconds["exact"],
        "fast_seconds": seconds["fast"],
        "speedup": seconds["exact"] / seconds["fast"],
        "work_ratio": exact_frames / frames,  # log-mel frames through the network: machine-independent
        "estimate_alone_agreement": float(agree.mean()),
        "sweep": sweep,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.timeline_agreement", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="ESC-50 folder (meta/esc50.csv, audio/)")
    parser.add_argument("--folds", type=int, nargs="+", default=[5])
    parser.add_argument("--clips-each", type=int, default=12, help="clips per recording (12: 60 s)")
    parser.add_argument("--recordings", type=int, default=None, help="at most this many recordings")
    parser.add_argument("--capped", action="store_true", help="the app's window cap (150) instead of a 1 s hop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint)
    waves = recordings(predictor, clip_paths(args.data_dir, args.folds), args.clips_each, args.seed, args.recordings)
    report = compare(predictor, waves, MAX_WINDOWS if args.capped else None)
    report.update(folds=args.folds, capped=args.capped, threads=torch.get_num_threads(), seed=args.seed)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
