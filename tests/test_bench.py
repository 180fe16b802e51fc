"""The benchmark command runs end to end (quick mode, tiny model) and reports every figure."""

from __future__ import annotations

import json

import torch

from audiocnn import attribution
from audiocnn.precision import bf16_pays_off
from benchmarks import bench


def test_quick_bench_reports_every_figure(tiny_checkpoint, capsys):
    assert bench.main(["--quick", "--json", "--checkpoint", str(tiny_checkpoint)]) == 0
    report = json.loads(capsys.readouterr().out)

    inference = report["inference"]
    explanation = report["explanation"]
    assert explanation["method"] in attribution.METHODS and explanation["ratio_to_analysis"] > 0
    for key in ("analyze_ms", "analyze_explained_ms", "faithfulness_ms", "listen_ms"):
        assert explanation[key]["median"] > 0
    for key in ("predict_5s_ms", "analyze_5s_ms", "occlusion_ms", "timeline_ms"):
        assert inference[key]["median"] > 0
        assert inference[key]["runs"] == report["plan"]["repeats" if "5s" in key else "slow_repeats"]
    assert inference["upload_decode_worker_ms"]["median"] > 0
    assert set(inference["stages_5s_ms"]) == {"decode_resample", "logmel", "forward"}
    assert inference["timeline_windows"] >= 2
    assert inference["batch_cli_clips_per_second"] > 0
    assert inference["precision"] == ("bf16" if bf16_pays_off(torch.device("cpu")) else "fp32")

    training = report["training"]
    for path in ("project", "naive"):
        step = training[path]
        assert step["samples_per_second"] > 0 and step["median_compute_ms"] > 0
        assert 0 <= step["median_fetch_ms"] < step["median_step_ms"]
    assert training["naive"]["bf16_autocast"] is False and training["naive"]["channels_last"] is False
    assert training["project"]["channels_last"] is True
    assert training["speedup"] > 0 and training["compute_speedup"] > 0

    assert report["peak_rss_mb"] >= report["peak_rss_mb_inference"] > 0
    assert report["machine"]["cores"] >= 1
    assert [t["name"] for t in report["targets"]] == [t[0] for t in bench.TARGETS]
    assert all(isinstance(t["met"], bool) for t in report["targets"])

    text = bench.format_text(report)
    for phrase in ("prediction, 5 s clip", "full analysis", "upload decode", "timeline", "batch CLI", "naive path",
                   "speed-up", "per step: fetch", "peak memory", "target", "inference in",
                   "analysis + explanation"):  # fmt: skip
        assert phrase in text
