"""Predictor: probabilities, batches, timelines, activations, Grad-CAM (tiny checkpoint) and occlusion."""

from __future__ import annotations

import dataclasses
import itertools
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, audio_bytes, tone

from audiocnn import inference
from audiocnn.checkpoint import load_checkpoint
from audiocnn.explain import CAM_LAYERS, grad_cam, occluded_copies
from audiocnn.features import FeatureConfig
from audiocnn.inference import TIMELINE_BATCH, WINDOW_BATCH, Predictor
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import activation_tree
from audiocnn.precision import bf16_pays_off
from audiocnn.samples import SAMPLES_DIR
from audiocnn.timeline import MAX_WINDOWS

RATE = 22050


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint)


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def cam_layers(predictor: Predictor) -> set[str]:
    """The Grad-CAM layers this (two-stage) model has: the stem and its stage outputs."""
    return {name for name in CAM_LAYERS if name in all_activation_names(predictor)}


def all_activation_names(predictor: Predictor) -> set[str]:
    names = {"pool", "logits"}
    for stage, blocks in activation_tree(predictor.model_config).items():
        names.add(stage)
        for block, sublayers in blocks.items():
            names.update([block, *sublayers])
    return names


def test_prediction_is_a_ranked_distribution(predictor):
    prediction = predictor.predict(tone(5.0, RATE, 440.0)[:, 0])
    assert prediction.probabilities.shape == (50,)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    assert (prediction.probabilities >= 0).all()
    ranked = prediction.ranked()
    assert len(ranked) == 50 and {label for label, _ in ranked} == set(CLASS_NAMES)
    scores = [p for _, p in ranked]
    assert scores == sorted(scores, reverse=True)
    assert prediction.ranked(5) == ranked[:5]
    assert prediction.ranked(500) == ranked
    assert prediction.top_label == ranked[0][0] == CLASS_NAMES[prediction.top_index]
    for top_k in (0, -1):  # a negative top_k used to slice from the end and drop the least likely classes
        with pytest.raises(ValueError, match=f"top_k must be at least 1 .* not {top_k}"):
            prediction.ranked(top_k)


def test_prediction_averages_time_rolled_views(tiny_checkpoint):
    """``views`` rolled copies of the log-mel are classified and their probabilities averaged."""
    clip = noise(5.0, 3)
    single, double, triple = (Predictor.from_checkpoint(tiny_checkpoint, views=n) for n in (1, 2, 3))
    features = single.logmel(clip)
    frames = features.shape[-1]
    with torch.no_grad():

        def probs(shift):
            return torch.softmax(single.forward(torch.roll(features, shift, dims=-1)), dim=1)[0].numpy()

        np.testing.assert_allclose(single.predict(clip).probabilities, probs(0), atol=1e-6)
        np.testing.assert_allclose(double.predict(clip).probabilities, (probs(0) + probs(frames // 2)) / 2, atol=1e-6)
        expected = (probs(0) + probs(frames // 3) + probs(2 * frames // 3)) / 3
        np.testing.assert_allclose(triple.predict(clip).probabilities, expected, atol=1e-6)
    assert not np.allclose(single.predict(clip).probabilities, double.predict(clip).probabilities, atol=1e-6)
    with pytest.raises(ValueError, match="views must be at least 1"):
        Predictor.from_checkpoint(tiny_checkpoint, views=0)


def test_predict_batch_equals_predict_per_clip(predictor):
    clips = [noise(seconds, seed) for seed, seconds in enumerate([0.3, 5.0, 7.5] * 6)]
    assert len(clips) > WINDOW_BATCH  # crosses a batch boundary
    batched = predictor.predict_batch(clips)
    assert len(batched) == len(clips)
    for clip, result in zip(clips, batched):
        np.testing.assert_allclose(result.probabilities, predictor.predict(clip).probabilities, atol=1e-6)
    assert predictor.predict_batch([]) == []


def test_timeline_windows_of_a_12_second_recording(predictor):
    recording = noise(12.0, 3)
    timeline = predictor.timeline(recording)
    assert timeline.starts.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # 5 s windows every second, last one flush
    assert timeline.window_seconds == 5.0
    assert timeline.probabilities.shape == (8, 50)
    np.testing.assert_allclose(timeline.probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(timeline.probabilities[7], predictor.predict(recording[7 * RATE :]).probabilities,
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(timeline.mean.probabilities, timeline.probabilities.mean(axis=0))
    np.testing.assert_allclose(predictor.timeline(recording, hop_seconds=2.5).starts, [0, 7 / 3, 14 / 3, 7], atol=1e-4)
    assert predictor.timeline(noise(3.0, 4)).starts.tolist() == [0]
    for hop in (0.0, -1.0, float("nan")):  # each used to become a silent 1-sample hop
        with pytest.raises(ValueError, match="hop_seconds must be positive"):
            predictor.timeline(recording[: 5 * RATE + 10], hop_seconds=hop)


def test_timeline_memory_is_bounded_by_one_batch(tiny_checkpoint):
    """A long recording's windows are cut batch by batch, never all at once."""
    features = FeatureConfig(sample_rate=8000, clip_seconds=1.0, n_fft=256, hop_length=128, n_mels=16, f_max=4000.0)
    predictor = Predictor(dataclasses.replace(load_checkpoint(tiny_checkpoint), feature_config=features), views=1)
    recording = (0.2 * np.random.default_rng(0).standard_normal(120 * 8000)).astype(np.float32)
    batch_bytes = WINDOW_BATCH * features.clip_samples * 4
    tracemalloc.start()
    try:
        timeline = predictor.timeline(recording, hop_seconds=0.05)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    windows = len(timeline.starts)
    assert windows == 2381 and windows * features.clip_samples * 4 > 100 * batch_bytes  # all at once: 76 MB
    assert peak < 8 * batch_bytes + 2 * timeline.probabilities.nbytes  # a few copies of one batch, plus the result


def test_predict_file_averages_long_recordings(predictor):
    recording = noise(9.0, 5)
    data = audio_bytes(recording[:, None], RATE, "WAV", "FLOAT")
    np.testing.assert_allclose(predictor.predict_file(data).probabilities,
                               predictor.timeline(recording).mean.probabilities, atol=1e-6)  # fmt: skip
    short = audio_bytes(recording[: 2 * RATE, None], RATE, "WAV", "FLOAT")
    np.testing.assert_allclose(predictor.predict_file(short).probabilities,
                               predictor.predict(recording[: 2 * RATE]).probabilities, atol=1e-6)  # fmt: skip


def test_analyze_gives_every_activation_and_cams(predictor):
    clip = tone(5.0, RATE, 880.0)[:, 0] + noise(5.0, 6)
    analysis = predictor.analyze(clip)
    assert set(analysis.activations) == all_activation_names(predictor)
    for name, value in analysis.activations.items():
        assert value.ndim == (1 if name in ("pool", "logits") else 3), name
        assert np.isfinite(value).all()
    unrolled = Predictor(predictor.checkpoint, views=1).predict(clip).probabilities  # the view the maps come from
    np.testing.assert_allclose(analysis.activations["logits"], np.log(unrolled) - np.log(unrolled).max()
                               + analysis.activations["logits"].max(), atol=1e-4)  # fmt: skip
    assert set(analysis.cams) == cam_layers(predictor) == {"stem", "layer1", "layer2"}
    for cam in analysis.cams.values():
        assert cam.shape == (128, 216) and cam.dtype == np.float32
        assert cam.min() >= 0 and cam.max() <= 1
    assert any(cam.max() == pytest.approx(1.0) for cam in analysis.cams.values())
    assert analysis.cam_class == analysis.prediction.top_index
    assert analysis.logmel.shape == (128, 216) and analysis.waveform.shape == (110250,)
    np.testing.assert_allclose(analysis.prediction.probabilities, predictor.predict(clip).probabilities, atol=1e-6)
    assert predictor.analyze(clip, with_activations=False).activations == {}
    assert analysis.prediction.class_names == predictor.class_names
    assert predictor.analyze(clip.astype(np.float64), with_activations=False).waveform.dtype == np.float32


def test_explain_another_class(predictor):
    clip = noise(5.0, 7)
    analysis = predictor.analyze(clip)
    other = (analysis.prediction.top_index + 1) % 50
    maps = predictor.explain(clip, other)
    assert set(maps) == cam_layers(predictor)
    chosen = predictor.analyze(clip, cam_class=other)
    assert chosen.cam_class == other
    for layer in maps:
        np.testing.assert_allclose(maps[layer], chosen.cams[layer], atol=1e-5)
    assert any(not np.allclose(maps[layer], analysis.cams[layer]) for layer in maps)


def test_grad_cam_validates_input(predictor):
    with pytest.raises(ValueError, match="single clip"):
        grad_cam(predictor.model, torch.zeros(2, 1, 128, 216), 0)


@pytest.mark.parametrize("class_index", [-1, 50, 1000])
def test_out_of_range_classes_are_refused(predictor, class_index):
    """-1 used to explain class 49 silently; every entry point refuses it instead."""
    clip = noise(5.0, 8)
    match = f"class_index {class_index} is out of range for 50 classes"
    with pytest.raises(ValueError, match=match):
        predictor.explain(clip, class_index)
    with pytest.raises(ValueError, match=match):
        predictor.analyze(clip, cam_class=class_index)
    with pytest.raises(ValueError, match=match):
        grad_cam(predictor.model, predictor.logmel(clip), class_index)


def test_concurrent_calls_share_one_predictor(predictor):
    """No hooks or per-request state: parallel analyses give the same results as sequential ones."""
    clips = [noise(5.0, seed) for seed in range(4)]
    expected = [predictor.analyze(c, with_activations=False).cams["layer2"] for c in clips]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: predictor.analyze(c, with_activations=False).cams["layer2"], clips))
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_occluded_copies_silence_one_stretch_each():
    logmel = torch.arange(2 * 10, dtype=torch.float32).reshape(1, 1, 2, 10)
    copies, bounds = occluded_copies(logmel, 4)
    assert list(bounds) == [0, 4, 8, 10] and copies.shape == (3, 1, 2, 10)
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        assert (copies[i, ..., start:end] == 0).all()  # the clip's floor
        outside = torch.ones(10, dtype=torch.bool)
        outside[start:end] = False
        assert torch.equal(copies[i, ..., outside], logmel[0, ..., outside])
    with pytest.raises(ValueError, match="single clip"):
        occluded_copies(logmel.repeat(2, 1, 1, 1), 4)
    with pytest.raises(ValueError, match="at least 1"):
        occluded_copies(logmel, 0)


def test_occlusion_finds_the_one_sound_of_a_clip(shipped_checkpoint):
    """One bark in 5 s of silence: silencing the bark's half second costs the dog class most, and
    silencing stretches that are already silent costs nothing at all."""
    model = Predictor(load_checkpoint(shipped_checkpoint))
    bark = model.load(SAMPLES_DIR / "5-203128-A-0.flac")[3300:11000]
    clip = np.zeros(model.feature_config.clip_samples, np.float32)
    onset = int(2.2 * model.feature_config.sample_rate)
    clip[onset : onset + len(bark)] = bark
    dog = model.class_names.index("dog")
    result = model.occlusion(clip, dog)
    assert len(result.starts) == 10 and result.starts[0] == 0 and result.ends[-1] == model.feature_config.clip_seconds
    assert result.base == pytest.approx(model.predict(clip).probabilities[dog], abs=1e-3)  # up to bf16 batch noise
    holding = int(np.argmax(result.drops))
    assert result.starts[holding] <= 2.2 < result.ends[holding] and result.drops[holding] > 0.1
    far = (result.ends < 1.9) | (result.starts > 3.2)
    np.testing.assert_allclose(result.drops[far], 0, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        model.occlusion(clip, 50)


def test_analysis_reuses_its_forward_pass_for_the_probabilities(tiny_checkpoint):
    """The one forward pass that gives the activations and the maps also gives the unrolled view's
    probabilities; only the rolled view runs again (what keeps a full analysis within budget)."""
    predictor = Predictor.from_checkpoint(tiny_checkpoint, views=2)
    batches = []
    forward = predictor.forward

    def counted(features, return_activations=False):
        batches.append((features.shape[0], return_activations))
        return forward(features, return_activations)

    predictor.forward = counted
    predictor.analyze(noise(5.0, 9))
    assert batches == [(1, True), (1, False)]


def test_a_long_recording_is_answered_by_the_capped_timeline(tiny_checkpoint):
    """Past ``MAX_WINDOWS`` windows (here 200 half-second windows, 1 s apart) the answer is the mean of
    the app's capped timeline (150 windows at a wider hop), not of every window at the 1 s hop."""
    features = FeatureConfig(sample_rate=4000, clip_seconds=0.5, n_fft=256, hop_length=128, n_mels=16, f_max=2000.0)
    predictor = Predictor(dataclasses.replace(load_checkpoint(tiny_checkpoint), feature_config=features), views=1)
    recording = (0.2 * np.random.default_rng(1).standard_normal(int(199.5 * 4000))).astype(np.float32)
    capped = predictor.timeline_scan(recording, max_windows=MAX_WINDOWS).run()
    every = predictor.timeline(recording)
    assert len(capped.starts) == MAX_WINDOWS and len(every.starts) == 200
    answer = predictor.predict_recording(recording).probabilities
    np.testing.assert_allclose(answer, capped.mean.probabilities, rtol=0, atol=1e-7)
    assert not np.allclose(answer, every.mean.probabilities, rtol=0, atol=1e-6)


def test_the_precision_asked_for_is_the_one_used(tiny_checkpoint):
    """``bf16=True`` or ``False`` is honoured whatever this CPU would choose; ``None`` lets the CPU decide.
    Both builders load the checkpoint named, and serve its weights channels-last (the speed measured)."""
    for bf16 in (True, False):
        assert Predictor.from_checkpoint(tiny_checkpoint, bf16=bf16).bf16 is bf16
        assert Predictor(load_checkpoint(tiny_checkpoint), bf16=bf16).bf16 is bf16
    chosen = Predictor.from_checkpoint(tiny_checkpoint)
    assert chosen.bf16 is bf16_pays_off(torch.device("cpu"))
    assert chosen.path == tiny_checkpoint and chosen.model_config == TINY_MODEL
    conv = next(m for m in chosen.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    fp32, bf16 = (Predictor.from_checkpoint(tiny_checkpoint, bf16=b) for b in (False, True))
    features = fp32.logmel(noise(5.0, 11))
    with torch.no_grad():
        exact = fp32.model(features)
        assert torch.equal(fp32.forward(features), exact) and not torch.equal(bf16.forward(features), exact)
    assert fp32.predict(noise(5.0, 11)).probabilities.dtype == np.float64


def test_timeline_passes_its_mode_on(predictor, monkeypatch):
    """``timeline`` shares passes by default and scores every window alone with ``exact=True``."""
    modes = []

    class Recorded(inference.TimelineScan):
        def __init__(self, *args):
            modes.append(args[-1])
            super().__init__(*args)

    monkeypatch.setattr(inference, "TimelineScan", Recorded)
    recording = noise(7.0, 10)
    predictor.timeline(recording)
    predictor.timeline(recording, exact=True)
    scan = predictor.timeline_scan(recording)
    assert modes == [False, True, False] and scan.batch == 2 * WINDOW_BATCH == TIMELINE_BATCH
