"""``python -m benchmarks.bench [--json] [--quick]``: how fast a clip is explained and a model retrains.

Runs on the shipped checkpoint (or ``--checkpoint``) and the bundled samples and prints
medians over repeated runs after warm-up, on the machine it runs on, with the targets
of issue 6. ``--quick`` is a seconds-long smoke run (used by the tests); its figures are
not meaningful.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from audiocnn.inference import Predictor
from audiocnn.samples import list_samples

from . import explanation_speed, inference_speed, training_speed
from .plan import FULL, QUICK
from .timing import machine, peak_rss_mb

TARGETS = (
    # (label, figure path, target, "max"|"min")
    ("prediction, 5 s clip (ms)", ("inference", "predict_5s_ms", "median"), 40.0, "max"),
    ("full analysis, 5 s clip (ms)", ("inference", "analyze_5s_ms", "median"), 150.0, "max"),
    ("timeline, 60 s recording (ms)", ("inference", "timeline_ms", "median"), 1500.0, "max"),
    ("training speed-up over naive (x)", ("training", "speedup"), 2.5, "min"),
)


def run(checkpoint: Path | None, quick: bool, data_dir: Path | None) -> dict[str, Any]:
    """Every figure, as one plain-data report."""
    plan = QUICK if quick else FULL
    predictor = Predictor.from_checkpoint(checkpoint)
    samples = list_samples()
    if not samples:
        raise RuntimeError("the bundled samples (assets/samples) are missing")
    report: dict[str, Any] = {"machine": machine(), "checkpoint": str(predictor.path), "quick": quick,
                              "plan": plan.to_dict()}  # fmt: skip
    report["inference"] = inference_speed.measure(predictor, samples, plan)
    report["explanation"] = explanation_speed.measure(predictor, samples, plan)
    report["peak_rss_mb_inference"] = peak_rss_mb()
    clips = training_speed.training_clips(samples, data_dir, plan.train_clips)
    report["training"] = training_speed.measure(predictor.model_config, predictor.feature_config, clips, plan)
    report["training"]["data"] = str(data_dir) if data_dir else "bundled samples"
    report["peak_rss_mb"] = peak_rss_mb()
    report["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    report["targets"] = [check(report, *target) for target in TARGETS]
    return report


def check(report: dict[str, Any], label: str, path: tuple[str, ...], target: float, kind: str) -> dict[str, Any]:
    value: Any = report
    for key in path:
        value = value[key]
    met = value <= target if kind == "max" else value >= target
    return {"name": label, "value": value, "target": target, "kind": kind, "met": bool(met)}


def format_text(report: dict[str, Any]) -> str:
    m, inf, tr = report["machine"], report["inference"], report["training"]
    stages = inf["stages_5s_ms"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"load average {m['load_average_1min']} -> {m['load_average_1min_end']}"
        + ("  [--quick: figures not meaningful]" if report["quick"] else ""),
        f"checkpoint: {report['checkpoint']} (inference in {inf['precision']})",
        "",
        f"prediction, 5 s clip         {inf['predict_5s_ms']['median']:8.1f} ms  (decode+resample "
        f"{stages['decode_resample']:.1f}, log-mel {stages['logmel']:.1f}, forward {stages['forward']:.1f})",
        f"full analysis, 5 s clip      {inf['analyze_5s_ms']['median']:8.1f} ms",
        f"occlusion, 5 s clip          {inf['occlusion_ms']['median']:8.1f} ms  (on demand in the app)",
        f"analysis + explanation       {report['explanation']['analyze_explained_ms']['median']:8.1f} ms  "
        f"({report['explanation']['method']} with its faithfulness line and listening: "
        f"{report['explanation']['ratio_to_analysis']:.1f} x the analysis alone)",
        f"upload decode (app worker)   {inf['upload_decode_worker_ms']['median']:8.1f} ms  (once per upload)",
        f"timeline, {inf['timeline_seconds']:.0f} s recording     {inf['timeline_ms']['median']:8.1f} ms"
        f"  ({inf['timeline_windows']} windows)",
        f"batch CLI                    {inf['batch_cli_clips_per_second']:8.1f} clips/s  "
        f"({inf['batch_cli_clips']} clips)",
        f"training, project path       {tr['project']['samples_per_second']:8.1f} samples/s  "
        f"(bf16 {tr['project']['bf16_autocast']}, channels-last; log-mel cache built once in "
        f"{tr['project']['cache_build_seconds']:.1f} s)",
        f"training, naive path         {tr['naive']['samples_per_second']:8.1f} samples/s  (fp32, decode every item)",
        f"training speed-up            {tr['speedup']:8.2f} x  (batch {tr['batch_size']}, {tr['steps']} steps, "
        f"{tr['clips']} clips from {tr['data']})",
        f"  per step: fetch {tr['naive']['median_fetch_ms']:.0f} -> {tr['project']['median_fetch_ms']:.0f} ms "
        f"(data path), compute {tr['naive']['median_compute_ms']:.0f} -> {tr['project']['median_compute_ms']:.0f} ms "
        f"({tr['compute_speedup']:.2f} x from fp32 -> {'bf16' if tr['project']['bf16_autocast'] else 'fp32'} "
        "channels-last)",
        f"peak memory (RSS)            {report['peak_rss_mb']:8.0f} MB  "
        f"(after inference: {report['peak_rss_mb_inference']:.0f} MB)",
        "",
    ]
    for t in report["targets"]:
        sign = "<=" if t["kind"] == "max" else ">="
        lines.append(f"{'met ' if t['met'] else 'MISS'}  {t['name']}: {t['value']:.2f} (target {sign} {t['target']:g})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run; figures not meaningful")
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the shipped model)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="train on ESC-50 training-fold clips from this folder instead of the bundled samples")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args.checkpoint, args.quick, args.data_dir)
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
