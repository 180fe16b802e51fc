"""The benchmark command runs end to end (quick mode, tiny model) and reports every figure."""

from __future__ import annotations

import json

import pytest
import torch

from audiocnn import attribution
from audiocnn.precision import bf16_pays_off
from benchmarks import bench, machine_rate, timing


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
    assert inference["timeline_exact_ms"]["median"] > 0 and inference["long_ms"]["median"] > 0
    assert inference["long_windows"] >= 2 and inference["long_before_windows"] >= inference["long_windows"]
    assert inference["timeline_speedup"] > 0 and inference["long_speedup"] > 0
    # sharing does less work than scoring every window on its own; the old path's 1 s hop no less
    assert inference["timeline_work_ratio"] > 1 and inference["long_capped_work_ratio"] > 1
    assert inference["long_work_ratio"] >= inference["long_capped_work_ratio"]  # equal below the cap (--quick)
    assert 0 <= inference["long_rescored"] <= inference["long_shared"] <= inference["long_windows"]
    rates = report["machine_rate_gflops"]
    assert rates["fp32"] > 0 and rates["bf16"] > 0
    assert rates["fp32"] == max(rates["before"]["fp32"], rates["after"]["fp32"])
    assert set(report["shares"]) == set(report["layer_shares"]) == set(bench.SHARES)
    assert set(inference["layer_rate_gflops"]) == {reference for _, _, reference in bench.SHARES.values()}
    for name, figure in report["layer_shares"].items():
        assert figure["gflops"] == report["shares"][name]["gflops"] and figure["share"] > 0, name
    for name, figure in report["shares"].items():
        assert figure["gflops"] > 0 and figure["share"] > 0, name
    assert inference["flops"]["predict_5s"] >= inference["views"] * inference["flops"]["forward"]
    assert inference["flops"]["analyze_5s"] > inference["flops"]["predict_5s"]  # a backward pass on top
    assert [t["name"] for t in report["targets"]] == [t[0] for t in bench.TARGETS]
    assert all(isinstance(t["met"], bool) for t in report["targets"])

    text = bench.format_text(report)
    for phrase in ("prediction, 5 s clip", "full analysis", "upload decode", "timeline", "batch CLI", "naive path",
                   "speed-up", "per step: fetch", "peak memory", "target", "inference in", "matmul rate",
                   "GFLOP/s", "window by window", "old 1 s-hop path", "hold on any CPU",
                   "analysis + explanation", "work (log-mel frames"):  # fmt: skip
        assert phrase in text
    report["targets"] = [bench.check(report, "impossible share", ("shares", "forward", "share"), 1e9, "min")]
    assert "MISS  impossible share: " in bench.format_text(report)


def test_the_check_says_missed_when_a_figure_misses():
    report = {"a": {"ms": 52.0}, "x": 2.4}
    assert bench.check(report, "at most", ("a", "ms"), 40.0, "max")["met"] is False
    assert bench.check(report, "at most", ("a", "ms"), 60.0, "max")["met"] is True
    assert bench.check(report, "at least", ("x",), 2.5, "min")["met"] is False
    assert bench.check(report, "at least", ("x",), 2.4, "min")["met"] is True  # the bound itself is met
    missed = bench.check(report, "at most", ("a", "ms"), 40.0, "max")
    assert missed == {"name": "at most", "value": 52.0, "target": 40.0, "kind": "max", "met": False}
    with pytest.raises(ValueError, match="kind"):
        bench.check(report, "typo", ("x",), 1.0, "minimum")


def test_counted_flops_of_a_matmul_and_a_share_are_known_answers():
    a, b = torch.ones(64, 32), torch.ones(32, 16)
    assert machine_rate.counted_flops(lambda: a @ b) == 2 * 64 * 32 * 16
    assert machine_rate.share(2e9, 10.0, 400.0) == {"gflops": 200.0, "share": 0.5}  # 2 GFLOP in 10 ms = 200 GFLOP/s
    assert machine_rate.matmul_gflops(torch.float32, size=64, repeats=1) > 0


def test_the_layer_reference_is_the_layers_counted_flops_over_their_bare_time(monkeypatch):
    """Known answer: a conv and a linear layer found with their input shapes, a pass timed on a fake clock."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(256, 5))
    shapes = [(type(layer).__name__, tuple(shape)) for layer, shape in machine_rate._layer_inputs(model, (2, 1, 8, 8))]
    assert shapes == [("Conv2d", (2, 1, 8, 8)), ("Linear", (2, 256))]
    reference = machine_rate.LayerReference(model, (1, 8, 8), batch=2, dtype=torch.float32)
    assert reference.flops == 2 * (2 * 4 * 8 * 8) * (1 * 3 * 3) + 2 * 2 * 256 * 5  # 2 x outputs x inputs per output
    clock = iter(range(10_000))
    monkeypatch.setattr(machine_rate.time, "perf_counter", lambda: next(clock) / 1000)
    assert reference.seconds() == pytest.approx(0.001)  # one reading before the pass, one after
    assert reference.gflops(0.002) == pytest.approx(reference.flops / 0.002 / 1e9)
    assert all(not module._forward_hooks for module in model.modules())  # the caller's model is left alone


def test_a_paired_timing_runs_the_reference_before_every_timed_call():
    calls = []
    timed = timing.paired_ms(lambda: calls.append("fn"), lambda: calls.append("ref") or 0.5, repeats=3, warmup=1)
    assert calls == ["fn", "ref", "fn", "ref", "fn", "ref", "fn"]
    assert timed["runs"] == 3 and timed["reference_seconds"] == 0.5
