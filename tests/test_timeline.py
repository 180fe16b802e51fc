"""Timeline scans: stop and resume, the shared-pass estimate, and which windows are rescored on their own."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audiocnn import timeline as timeline_module
from audiocnn.audio import load_audio
from audiocnn.checkpoint import load_checkpoint
from audiocnn.features import SUPPORTED_FEATURE_VERSIONS
from audiocnn.inference import Predictor
from audiocnn.model import ModelConfig
from audiocnn.samples import list_samples
from audiocnn.shared_windows import _pool_windows, output_stride, shared_probabilities
from audiocnn.timeline import MAX_WINDOWS

RATE = 22050


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint)


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def every_version(margin: float) -> dict[int, float]:
    return dict.fromkeys(SUPPORTED_FEATURE_VERSIONS, margin)


def test_a_scan_stopped_and_resumed_equals_one_run_straight_through(tiny):
    recording = noise(70.0, 1)
    straight = tiny.timeline_scan(recording, exact=True).run()
    scan = tiny.timeline_scan(recording, exact=True)
    assert scan.total == 66 and scan.done == 0 and not scan.finished
    assert scan.step() == scan.batch  # one batch
    partial = scan.result()
    assert len(partial.starts) == scan.batch
    np.testing.assert_allclose(partial.probabilities, straight.probabilities[: scan.batch], atol=1e-6)
    seen = []
    resumed = scan.run(lambda done, total: seen.append((done, total)))
    assert seen == [(64, 66), (66, 66)] and scan.finished and scan.step() == 66  # a finished scan does nothing
    np.testing.assert_allclose(resumed.probabilities, straight.probabilities, atol=1e-6)
    np.testing.assert_array_equal(resumed.starts, straight.starts)
    with pytest.raises(RuntimeError, match="no window"):
        tiny.timeline_scan(recording).result()


def test_the_cap_widens_the_hop_of_long_recordings(tiny):
    scan = tiny.timeline_scan(noise(600.0, 2), max_windows=MAX_WINDOWS)
    assert scan.total == MAX_WINDOWS
    assert np.diff(scan.starts).min() > 3.99  # evenly spread, no two a few samples apart
    assert scan.starts[-1] == 595.0


def test_pooling_weighs_each_cell_by_its_share_of_the_cells_a_window_pools_on_its_own():
    predictor = SimpleNamespace(model_config=ModelConfig(stem_pool=False))  # 16 frames per cell
    assert output_stride(predictor) == 16
    cells = torch.arange(30, dtype=torch.float32)[None]  # one channel; cell j holds j and spans frames 16j ± 8
    pooled = _pool_windows(predictor, cells, np.array([0.0, 16.0, 8.0, 4.0]), 216)[:, 0].numpy()
    # on its own a 216-frame window ends in 14 cells centred on its frames 0, 16, ..., 208, pooled equally:
    # offset 0 takes cells 0-13 whole, offset 16 cells 1-14; offset 8 covers frames 0..224, so half of cells
    # 0 and 14 and all of 1-13; offset 4 covers -4..220: cell 0 for 12 frames, 1-13 whole, cell 14 for 4
    half = (sum(range(1, 14)) + 14 / 2) / 14
    quarter = (16 * sum(range(1, 14)) + 14 * 4) / 224
    np.testing.assert_allclose(pooled, [6.5, 7.5, half, quarter], rtol=1e-6)
    pooled = _pool_windows(predictor, cells, np.array([0.0]), 200)[:, 0].numpy()  # 13 cells: 200 / 16 = 12.5
    np.testing.assert_allclose(pooled, [6.0], rtol=1e-6)


def test_all_fragile_means_exact_and_none_fragile_means_the_shared_estimate(tiny, monkeypatch):
    recording = noise(68.0, 3)  # 64 windows: two full batches, both shared
    exact_scan = tiny.timeline_scan(recording, exact=True)
    exact = exact_scan.run().probabilities
    exact_frames = 64 * 2 * 216  # windows x views x frames
    shared_frames = 2 * (848925 // 512 + 1)  # each batch's stretch: 0-38.5 s and 29.5-68 s, 38.5 s of audio
    assert exact_scan.frames == exact_frames and exact_scan.shared == exact_scan.rescored == 0
    monkeypatch.setattr(timeline_module, "EXACT_MARGIN", every_version(1.01))  # every window rescored
    scan = tiny.timeline_scan(recording)
    everything = scan.run().probabilities
    assert scan.shared == scan.total == scan.rescored == 64
    assert scan.frames == shared_frames + exact_frames
    np.testing.assert_allclose(everything, exact, atol=1e-6)
    monkeypatch.setattr(timeline_module, "EXACT_MARGIN", every_version(0.0))  # none rescored
    scan = tiny.timeline_scan(recording)
    estimate = scan.run().probabilities
    assert scan.rescored == 0 and scan.shared == 64 and scan.frames == shared_frames
    starts = [round(s * RATE) for s in scan.starts]
    batches = [shared_probabilities(tiny, recording, starts[i : i + scan.batch]) for i in range(0, 64, scan.batch)]
    np.testing.assert_allclose(estimate, np.concatenate(batches), atol=1e-6)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(estimate - exact).max() > 1e-4  # the estimate is not the per-window result


def test_only_windows_the_estimate_cannot_decide_are_rescored(monkeypatch, shipped_checkpoint):
    predictor = Predictor.from_checkpoint(shipped_checkpoint)
    recording = np.concatenate([load_audio(clip.path, RATE) for clip in list_samples()[::25][:4]])  # 20 s
    exact = predictor.timeline(recording, exact=True).probabilities
    margin = timeline_module.EXACT_MARGIN[predictor.feature_config.version]
    monkeypatch.setattr(timeline_module, "EXACT_MARGIN", every_version(0.0))
    estimate = predictor.timeline(recording).probabilities
    monkeypatch.setattr(timeline_module, "EXACT_MARGIN", every_version(margin))
    scan = predictor.timeline_scan(recording)
    fast = scan.run().probabilities
    top_two = np.sort(estimate, axis=1)[:, -2:]
    fragile = top_two[:, 1] - top_two[:, 0] < margin
    assert scan.rescored == fragile.sum() and 0 < scan.rescored < scan.total
    np.testing.assert_allclose(fast[fragile], exact[fragile], atol=2e-3)  # bf16: batch-size noise only
    np.testing.assert_array_equal(fast[~fragile], estimate[~fragile])
    assert (fast.argmax(1) == exact.argmax(1)).mean() >= 0.9


def test_sharing_is_used_only_where_it_pays(tiny):
    assert tiny.timeline_scan(noise(60.0, 4))._shares(list(range(0, 32 * RATE, RATE)))  # 1 s hop: 0.13 of the work
    four = round(3.99 * RATE)
    assert tiny.timeline_scan(noise(140.0, 4))._shares(list(range(0, 32 * four, four)))  # the cap's 4 s hop: 0.42
    assert tiny.timeline_scan(noise(6.0, 4))._shares([0, RATE])  # two windows 1 s apart: 6 s for 20 s, 0.3
    assert not tiny.timeline_scan(noise(6.0, 4))._shares([0])  # a lone window: 6 s for 10 s, 0.6
    assert not tiny.timeline_scan(noise(5.0, 4))._shares([0])  # 5 s for 10 s: 0.5
    five = 5 * RATE
    assert not tiny.timeline_scan(noise(170.0, 4))._shares(list(range(0, 32 * five, five)))  # no overlap: 0.52


def test_a_ten_minute_scan_shares_its_pass_and_does_less_than_half_the_work(tiny, monkeypatch):
    recording = noise(600.0, 6)
    monkeypatch.setattr(timeline_module, "EXACT_MARGIN", every_version(0.0))  # none rescored: the shared passes alone
    scan = tiny.timeline_scan(recording, max_windows=MAX_WINDOWS)
    scan.run()
    assert scan.shared == scan.total == MAX_WINDOWS
    # five batches (32 x 4 + 22 windows), one stretch each: the 600 s once, plus where each batch's last window
    # and context (7.5 s after its start) reach past the next batch's context (2.5 s before its start, 3.99 s
    # later): 4 x 6.0 s. 624 s is 26871 frames, one more per stretch: 0.415 of scoring the windows one by one.
    assert abs(scan.frames - 624 * RATE / 512) <= 6
    assert scan.frames < 0.42 * MAX_WINDOWS * 2 * 216


def test_the_shared_pass_follows_the_feature_version(tiny_checkpoint):
    """Version 2 references each frame to its peak, so a gain changes nothing; version 1 hears the level."""
    checkpoint = load_checkpoint(tiny_checkpoint)
    recording = noise(30.0, 5) * np.linspace(0.2, 1.0, int(30.0 * RATE), dtype=np.float32)
    starts = list(range(0, 25 * RATE, RATE))
    estimates = {}
    for version in (1, 2):
        config = dataclasses.replace(checkpoint.feature_config, version=version)
        predictor = Predictor(dataclasses.replace(checkpoint, feature_config=config))
        estimates[version] = [shared_probabilities(predictor, recording * gain, starts) for gain in (1.0, 0.05)]
    np.testing.assert_allclose(estimates[2][0], estimates[2][1], atol=1e-5)
    assert np.abs(estimates[1][0] - estimates[1][1]).max() > 1e-4


def test_each_feature_version_rescores_by_its_own_margin(tiny_checkpoint, monkeypatch):
    checkpoint = load_checkpoint(tiny_checkpoint)
    recording = noise(40.0, 7)
    monkeypatch.setattr(timeline_module, "EXACT_MARGIN", {1: 0.0, 2: 1.01})
    for version, rescored in ((1, 0), (2, 36)):
        config = dataclasses.replace(checkpoint.feature_config, version=version)
        scan = Predictor(dataclasses.replace(checkpoint, feature_config=config)).timeline_scan(recording)
        scan.run()
        assert (scan.shared, scan.rescored) == (36, rescored)
