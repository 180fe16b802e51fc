"""``python -m benchmarks.cli_speed [--data-dir ../shared/esc50]``: batch CLI clips/s, before and after.

"Before" is the batch CLI as it was until issue 17: each file decoded in-process and classified on
its own, one after the other. "After" is ``audiocnn.cli.predict_files``: decoding in the isolated
worker, a thread running ahead of the network, short clips classified 16 at a time. Both run on the
same files in the same process, alternating, so a change in machine load hits both alike; the
figures are clips per second of classification (the command's start-up, about 3 s for torch and
the model, is the same for both and left out). With ``--data-dir`` the 400 held-out fold-5 clips
are timed too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from audiocnn.audio import AudioError
from audiocnn.cli import predict_files
from audiocnn.inference import Predictor
from audiocnn.samples import list_samples

from .timeline_agreement import clip_paths


def before(predictor: Predictor, files: list[Path], top_k: int) -> list[dict]:
    """The pre-issue-17 batch CLI loop: in-process decoding, one file at a time."""
    results = []
    for path in files:
        try:
            ranked = predictor.predict_file(path).ranked(top_k)
            results.append({"file": str(path), "predictions": [{"label": k, "probability": p} for k, p in ranked]})
        except AudioError as error:
            results.append({"file": str(path), "error": str(error)})
    return results


def clips_per_second(run: Callable[[], list[dict]], count: int, rounds: list[float]) -> list[dict]:
    start = time.perf_counter()
    results = run()
    rounds.append(count / (time.perf_counter() - start))
    return results


def compare(predictor: Predictor, files: list[Path], repeats: int) -> dict[str, Any]:
    """Median clips/s of both paths over ``repeats`` alternating rounds (after one untimed round each)."""
    old, new = [], []
    before(predictor, files[:8], 5), predict_files(predictor, files[:8], 5)  # warm-up
    for _ in range(repeats):
        a = clips_per_second(lambda: before(predictor, files, 5), len(files), old)
        b = clips_per_second(lambda: predict_files(predictor, files, 5), len(files), new)
    same_top = sum(
        x["predictions"][0]["label"] == y["predictions"][0]["label"] for x, y in zip(a, b) if "error" not in x
    )
    slow, fast = statistics.median(old), statistics.median(new)
    return {"clips": len(files), "before_clips_per_second": slow, "after_clips_per_second": fast,
            "speedup": fast / slow, "rounds": repeats, "same_top_class": same_top}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="ESC-50 folder: also time the fold-5 clips")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of each path")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint()
    report: dict[str, Any] = {"threads": torch.get_num_threads()}
    report["bundled"] = compare(predictor, [clip.path for clip in list_samples()], args.repeats)
    if args.data_dir is not None:
        report["fold5"] = compare(predictor, clip_paths(args.data_dir, [5]), args.repeats)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
