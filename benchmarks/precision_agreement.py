"""``python -m benchmarks.precision_agreement --data-dir ../shared/esc50``: what bf16 inference changes.

The predictor runs the network in bf16 autocast where the CPU computes bf16 natively
(``audiocnn.precision``), which halves a forward pass. This scores the same clips through the
serving path twice, in bf16 and in fp32, from one decode, and prints how many clips change their
top class and the largest change of any probability: the figures the model card quotes for the
shipped checkpoint. It measures agreement, not accuracy, so every fold may be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audiocnn.inference import Predictor
from training.data import FOLDS, read_metadata, select_folds
from training.evaluate import add_clip_options

BATCH = 32


def agreement(checkpoint: Path | None, data_dir: Path, folds: list[int], limit: int | None = None) -> dict:
    """Top-1 changes and probability differences between bf16 and fp32 inference over the folds' clips."""
    clips = select_folds(read_metadata(data_dir), folds)[:limit]
    fast = Predictor.from_checkpoint(checkpoint, bf16=True)
    exact = Predictor.from_checkpoint(checkpoint, bf16=False)
    changed, largest, per_clip_largest = 0, 0.0, []
    for start in tqdm(range(0, len(clips), BATCH), desc="clips", unit="batch", leave=False, disable=None):
        waveforms = [exact.load(clip.path) for clip in clips[start : start + BATCH]]
        low = np.stack([p.probabilities for p in fast.predict_batch(waveforms)])
        high = np.stack([p.probabilities for p in exact.predict_batch(waveforms)])
        changed += int((low.argmax(1) != high.argmax(1)).sum())
        difference = np.abs(low - high)
        largest = max(largest, float(difference.max()))
        per_clip_largest.append(difference.max(axis=1))
    return {
        "checkpoint": str(checkpoint or "assets/model.pt"),
        "folds": folds,
        "clips": len(clips),
        "top1_changed": changed,
        "largest_probability_difference": round(largest, 4),
        "mean_largest_difference_per_clip": round(float(np.concatenate(per_clip_largest).mean()), 5),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision_agreement", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_clip_options(parser, folds=FOLDS)
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips (a quick look)")
    args = parser.parse_args(argv)
    result = agreement(args.checkpoint, args.data_dir, args.folds, args.limit)
    print(json.dumps(result))
    largest = result["largest_probability_difference"] * 100
    print(f"bf16 vs fp32 over {result['clips']} clips: top-1 changed on {result['top1_changed']}, largest "
          f"probability difference {largest:.2f} points", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
