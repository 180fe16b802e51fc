"""How much work one benchmark run does: the full plan, and a quick smoke-test plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    warmup: int = 3  # untimed runs before each inference measurement
    repeats: int = 21  # timed runs of the per-clip measurements (prediction, analysis, stages)
    slow_repeats: int = 7  # timed runs of the timeline and the batch CLI pass
    timeline_seconds: float = 60.0
    long_seconds: float = 600.0  # the longest recording accepted: the app's and the CLI's capped timeline
    long_repeats: int = 3  # timed runs of that timeline, each after one run of the old 1 s-hop path on it
    batch_clips: int = 100  # bundled samples in the batch CLI pass (all of them)
    train_clips: int = 100  # clips the two training data paths cycle through
    train_batch: int = 32
    train_warmup: int = 2  # untimed optimiser steps per data path
    train_steps: int = 16  # timed optimiser steps per data path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Plan()
QUICK = Plan(warmup=1, repeats=2, slow_repeats=1, timeline_seconds=8.0, long_seconds=12.0, long_repeats=1,
             batch_clips=3, train_clips=8, train_batch=4, train_warmup=1, train_steps=2)  # fmt: skip
