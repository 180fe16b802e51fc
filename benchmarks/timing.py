"""Medians of repeated runs, peak memory and a description of the machine measured on."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def median_ms(
    fn: Callable[[], object], repeats: int, warmup: int, untimed: Callable[[], object] | None = None
) -> dict[str, float]:
    """Median (and min) wall time of ``fn`` in ms, after ``warmup`` untimed calls.

    Warm-up runs absorb one-off costs (allocator growth, oneDNN kernel selection) that a
    long-lived app process pays once, so the median is what a user feels per request.
    ``untimed`` runs before each timed call, outside its time.
    """
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        if untimed is not None:
            untimed()
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return {"median": statistics.median(runs), "min": min(runs), "runs": len(runs)}


def paired_ms(fn: Callable[[], object], reference: Callable[[], float], repeats: int, warmup: int) -> dict[str, float]:
    """``median_ms`` of ``fn``, with ``reference`` (which returns its own seconds) run before each timed call.

    ``reference_seconds`` is the reference's median: taken alternately with the figure, it saw the same
    moments of the machine, so a figure over its reference does not move with the host's drift.
    """
    references: list[float] = []
    timed = median_ms(fn, repeats, warmup, untimed=lambda: references.append(reference()))
    return {**timed, "reference_seconds": statistics.median(references)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures depend on; the load average shows whether the machine was quiet."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
