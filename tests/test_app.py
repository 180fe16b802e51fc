"""The dashboard, page by page, through Streamlit's AppTest with the shipped model.

AppTest runs the real script in this process, so the model (``st.cache_resource``) is
loaded once for the whole module. Assertions compare what a page shows with what the
library computes for the same audio; they never depend on the model being right.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import ROOT, TINY_MODEL, audio_bytes, tone
from streamlit.testing.v1 import AppTest

from audiocnn.audio import load_audio
from audiocnn.checkpoint import save_checkpoint
from audiocnn.features import FeatureConfig
from audiocnn.inference import Prediction, Predictor
from audiocnn.labels import CLASS_NAMES, class_info
from audiocnn.model import AudioCNN, ModelConfig
from audiocnn.precision import bf16_pays_off
from audiocnn.samples import list_samples
from ui import state
from ui.model_cache import model_key
from ui.plots import class_label

TIMEOUT = 120  # seconds per script run: the first one loads the model (AppTest's default is 3 s)


@pytest.fixture(scope="module")
def predictor(shipped_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(shipped_checkpoint)


@pytest.fixture(scope="module")
def sample():
    return list_samples()[0]


def new_app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()


def check_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def top_lines(at: AppTest) -> list[str]:
    """The ranked-prediction lines (``**1. 🐕 Dog** · Animals``)."""
    return [text for text in markdown(at) if text.startswith("**") and ". " in text[:6] and "·" in text]


def expected_top(predictor: Predictor, data: bytes | Path) -> str:
    waveform = load_audio(data, predictor.feature_config.sample_rate)
    return predictor.predict(waveform).top_label


def noise_wav(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    data = (0.2 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    data += tone(seconds, rate, 880.0, channels)[: data.shape[0]] * 0.5
    return audio_bytes(data, rate, "WAV", "PCM_16")


def upload(at: AppTest, name: str, data: bytes, mime: str = "audio/wav") -> AppTest:
    at.file_uploader(key="upload").set_value((name, data, mime))
    return at.run()


def waveform_highlight(at: AppTest) -> tuple[float, float] | None:
    """The span shaded on the waveform chart (the window the page explains), None when none is."""
    specs = [json.loads(chart.proto.spec) for chart in plotly_charts(at)]
    waveform = next(s for s in specs if s["layout"].get("yaxis", {}).get("title", {}).get("text") == "Amplitude")
    shapes = waveform["layout"].get("shapes", [])
    return (shapes[0]["x0"], shapes[0]["x1"]) if shapes else None


def window_slider(at: AppTest):
    return next(w for w in at.select_slider if w.key.startswith("window_"))


def clip_caption(at: AppTest) -> str:
    """The caption under the clip title: source · duration · notes."""
    return next(c.value for c in at.caption if c.value.split(" · ")[0] in {"upload", "recording", "sample"})


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_landing_page_offers_three_inputs():
    at = new_app()
    check_clean(at)
    assert "Upload a file" in at.info[0].value
    uploader = at.file_uploader(key="upload")
    assert set(uploader.allowed_type) >= {".wav", ".flac", ".ogg", ".mp3"} or set(uploader.allowed_type) >= {
        "wav", "flac", "ogg", "mp3",
    }  # fmt: skip
    assert at.audio_input(key="record").sample_rate == 44100
    assert at.selectbox(key="sample_class").options


def test_upload_bundled_sample_shows_ranked_predictions(predictor, sample):
    at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
    check_clean(at)
    assert not at.error
    lines = top_lines(at)
    assert len(lines) == 5
    top = class_info(expected_top(predictor, sample.path))
    assert lines[0].startswith(f"**1. {top.emoji} {top.display_name}**")
    assert top.category in lines[0]
    ranking = at.dataframe[0].value
    assert len(ranking) == 50
    assert ranking["probability"].is_monotonic_decreasing
    assert abs(ranking["probability"].sum() - 1) < 1e-4
    assert len(plotly_charts(at)) >= 3  # waveform, spectrogram, Grad-CAM
    assert "upload" in clip_caption(at)


def test_upload_test_made_stereo_44k_wav(predictor):
    data = noise_wav(2.0, rate=44100, channels=2)
    at = upload(new_app(), "made.wav", data)
    check_clean(at)
    assert not at.error
    top = class_info(expected_top(predictor, data))
    assert top_lines(at)[0].startswith(f"**1. {top.emoji} {top.display_name}**")
    assert "2.0 s" in clip_caption(at)
    assert waveform_highlight(at) is None  # the whole clip is the window: nothing to shade


def test_long_upload_gets_a_timeline_and_the_window_drives_the_page(predictor):
    data = noise_wav(12.0, rate=16000, channels=1, seed=1)
    at = upload(new_app(), "long.wav", data)
    check_clean(at)
    assert len(window_slider(at).options) == 8  # 12 s, 5 s windows, 1 s hop
    window_slider(at).set_value(0).run()
    assert any(text.startswith("**Listen** (0.0–5.0 s") for text in markdown(at))
    assert waveform_highlight(at) == (0.0, 5.0)
    window_slider(at).set_value(7).run()
    check_clean(at)
    assert any(text.startswith("**Listen** (7.0–12.0 s") for text in markdown(at))
    assert waveform_highlight(at) == (7.0, 12.0)  # the last window, flush with the end, is shaded too
    waveform = load_audio(data, predictor.feature_config.sample_rate)
    last = predictor.predict(waveform[7 * 22050 : 12 * 22050])
    top = class_info(last.top_label)
    assert top_lines(at)[0].startswith(f"**1. {top.emoji} {top.display_name}**")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # e.g. a player dividing the silent window by its peak
def test_a_silent_window_of_a_long_recording_is_flagged():
    sound = load_audio(noise_wav(6.0, rate=22050, channels=1, seed=6), 22050)
    data = audio_bytes(np.concatenate([sound, np.zeros(6 * 22050, np.float32)])[:, None], 22050)
    at = upload(new_app(), "then_quiet.wav", data)
    window_slider(at).set_value(0).run()
    check_clean(at)
    assert not at.warning
    window_slider(at).set_value(len(window_slider(at).options) - 1).run()  # 7-12 s: nothing but zeros
    check_clean(at)
    assert "This window is silent" in at.warning[0].value


def timeline_charts(at: AppTest) -> list[dict]:
    specs = [json.loads(chart.proto.spec) for chart in plotly_charts(at)]
    return [s for s in specs if "each window at its centre" in str(s["layout"].get("xaxis", {}).get("title"))]


def test_a_clip_barely_over_the_window_gets_one_centred_window():
    at = upload(new_app(), "barely.wav", noise_wav(5.3, rate=22050, channels=1, seed=5))
    check_clean(at)
    assert not [w for w in at.select_slider if w.key.startswith("window_")]  # no picker with nothing to pick
    assert not timeline_charts(at)
    assert any("centre 5 s (0.15–5.15 s)" in c.value for c in at.caption)
    assert any(text.startswith("**Listen** (0.15–5.15 s") for text in markdown(at))


def test_a_clip_with_two_windows_gets_a_picker_that_moves_the_window_but_no_chart():
    at = upload(new_app(), "five_eight.wav", noise_wav(5.8, rate=22050, channels=1, seed=7))
    check_clean(at)
    assert window_slider(at).options == ["0.0–5.0 s", "0.8–5.8 s"]
    assert not timeline_charts(at)  # two dots a pixel apart said nothing
    window_slider(at).set_value(1).run()
    assert any(text.startswith("**Listen** (0.8–5.8 s") for text in markdown(at))
    assert waveform_highlight(at) == pytest.approx((0.8, 5.8), abs=1e-3)
    window_slider(at).set_value(0).run()
    assert any(text.startswith("**Listen** (0.0–5.0 s") for text in markdown(at))


def test_the_timeline_chart_spans_the_recording_and_shades_the_chosen_window():
    at = upload(new_app(), "long.wav", noise_wav(12.0, rate=16000, channels=1, seed=1))
    window_slider(at).set_value(3).run()
    (chart,) = timeline_charts(at)
    assert chart["layout"]["xaxis"]["range"] == pytest.approx([0, 12.0])
    (shade,) = chart["layout"]["shapes"]
    assert (shade["x0"], shade["x1"]) == (3.0, 8.0)
    x = chart["data"][0]["x"]  # plotly ships numeric arrays as base64
    centres = np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]) if isinstance(x, dict) else x
    assert list(centres) == pytest.approx([2.5 + i for i in range(8)])  # window centres


def test_a_very_short_clip_says_how_much_of_the_window_is_padding():
    at = upload(new_app(), "blip.wav", noise_wav(0.4, rate=22050, channels=1, seed=8))
    check_clean(at)
    assert any("the last 4.60 s (92% of its window) is silence added as padding" in c.value for c in at.caption)
    long = upload(new_app(), "long.wav", noise_wav(6.0, rate=22050, channels=1, seed=8))
    assert not any("padding" in c.value for c in long.caption)


def test_a_stopped_scan_keeps_its_windows_and_resumes_where_it_stopped(predictor):
    data = noise_wav(60.0, rate=16000, channels=1, seed=9)
    digest = hashlib.sha256(data).hexdigest()[:16]
    at = new_app()
    at.session_state[state.STOPPED] = {digest}  # as if Stop had been clicked before the first batch
    upload(at, "minute.wav", data)
    check_clean(at)
    assert any("Scan stopped after 0 of 56 windows" in i.value for i in at.info)
    key = (model_key(predictor), digest)  # scans are kept per model and clip
    scan = at.session_state[state.TIMELINES][key]
    scan.step()  # one batch done (what a run interrupted by Stop or by leaving the page leaves behind)
    at.run()
    assert any(f"Scan stopped after {scan.done} of 56 windows" in i.value for i in at.info)
    assert len(window_slider(at).options) == scan.done
    assert any(f"{scan.done} overlapping 5-second windows scanned so far" in c.value for c in at.caption)
    at.button(key=f"resume_{digest}").click().run()
    check_clean(at)
    assert at.session_state[state.TIMELINES][key] is scan and scan.finished  # the same scan, continued
    assert len(window_slider(at).options) == 56 and not at.info
    waveform = load_audio(data, predictor.feature_config.sample_rate)
    np.testing.assert_allclose(scan.result().probabilities, predictor.timeline(waveform).probabilities, atol=1e-4)


def test_the_chosen_window_lives_in_one_place(predictor):
    at = upload(new_app(), "long.wav", noise_wav(12.0, rate=16000, channels=1, seed=1))
    window_slider(at).set_value(6).run()
    clip_id = window_slider(at).key.removeprefix("window_")
    assert at.session_state[state.WINDOWS][clip_id] == 6
    at.session_state[state.WINDOWS][clip_id] = 2  # e.g. another page moved it: the picker follows
    at.run()
    assert window_slider(at).value == 2
    assert any(text.startswith("**Listen** (2.0–7.0 s") for text in markdown(at))


def test_microphone_recording_reads_the_rate_from_the_header(predictor):
    data = noise_wav(1.5, rate=44100, channels=1, seed=2)
    at = new_app()
    at.audio_input(key="record").upload("recording.wav", data)
    at.run()
    check_clean(at)
    assert not at.error
    assert "recorded at 44100 Hz" in clip_caption(at)
    top = class_info(expected_top(predictor, data))
    assert top_lines(at)[0].startswith(f"**1. {top.emoji} {top.display_name}**")


def test_pick_a_bundled_sample_by_class(predictor):
    label = list_samples()[-1].label
    at = new_app()
    at.selectbox(key="sample_class").set_value(label).run()
    clip = at.selectbox(key="sample_clip").value
    at.button(key="sample_go").click().run()
    check_clean(at)
    assert clip.label == label
    assert any(f"The true class is {class_info(label).emoji}" in text for text in markdown(at))
    top = class_info(expected_top(predictor, clip.path))
    assert top_lines(at)[0].startswith(f"**1. {top.emoji} {top.display_name}**")


def test_change_the_explained_class_and_layer(predictor, sample):
    at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
    cam_class = next(w for w in at.selectbox if w.key.startswith("cam_class_"))
    other = cam_class.options[-1]  # the least likely class
    cam_class.select_index(len(cam_class.options) - 1).run()
    check_clean(at)
    at.selectbox(key="explain_method").set_value("Grad-CAM").run()  # the default may be an input-level method
    at.radio(key="cam_layer").set_value("layer2").run()
    check_clean(at)
    caption = next(c.value for c in at.caption if c.value.startswith("Grad-CAM layer2 of"))
    assert other.split(" — ")[0] in caption
    # The overlay is that class's layer2 map, as the library computes it for this clip.
    waveform = load_audio(sample.path, predictor.feature_config.sample_rate)
    least_likely = int(predictor.predict(waveform).order[-1])
    overlay = next(maps[1] for maps in heatmaps(at) if len(maps) == 2)
    np.testing.assert_allclose(overlay, predictor.explain(waveform, least_likely)["layer2"], atol=1e-5)


def test_occlusion_on_demand_agrees_with_the_library(predictor, sample):
    at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
    assert not any(c.value.startswith("The model gives") for c in at.caption)  # off until asked: it costs 0.3 s
    at.toggle(key="occlusion").set_value(True).run()
    check_clean(at)
    waveform = load_audio(sample.path, predictor.feature_config.sample_rate)
    top = predictor.predict(waveform).top_index
    expected = predictor.occlusion(waveform, top)
    (bars,) = next(chart for chart in traces(at, "bar") if chart)
    np.testing.assert_allclose(plotted(bars["y"]), expected.drops, atol=1e-6)
    caption = next(c.value for c in at.caption if c.value.startswith("The model gives"))
    assert f"{class_label(predictor.class_names[top])} {expected.base:.1%}" in caption


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.wav", b"", "empty"),
        ("notes.wav", b"hello, this is not a recording\n" * 20, "text file"),
        ("corrupt.flac", b"fLaC" + bytes(range(256)) * 8, "decode"),
        ("silence.wav", audio_bytes(np.zeros((22050, 1), np.float32), 22050), "silent"),
        ("blip.wav", audio_bytes(tone(0.01, 22050), 22050), "ms long"),
        ("huge.wav", b"RIFF" + b"\0" * (50 * 1024 * 1024 + 10), "MB; the limit is"),
        ("endless.wav", audio_bytes(np.zeros((8000 * 601, 1), np.int16), 8000, subtype="PCM_16"), "600 s"),
    ],
    ids=["empty", "text", "corrupt", "silent", "too-short", "too-large", "too-long"],
)
def test_bad_files_get_a_message_not_a_traceback(name, data, message):
    at = upload(new_app(), name, data)
    check_clean(at)
    assert len(at.error) == 1
    assert name in at.error[0].value
    assert message in at.error[0].value
    assert not top_lines(at)


def test_a_bad_file_keeps_the_previous_clip(sample):
    at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
    before = top_lines(at)
    upload(at, "broken.mp3", b"\xff\xfb" + b"\x00" * 100)
    check_clean(at)
    assert "broken.mp3" in at.error[0].value
    assert top_lines(at) == before


def test_a_refusal_goes_away_with_its_file():
    at = upload(new_app(), "broken.mp3", b"\xff\xfb" + b"\x00" * 100)
    assert "broken.mp3" in at.error[0].value
    at.file_uploader(key="upload").set_value(None).run()
    check_clean(at)
    assert not at.error


def test_layers_without_a_clip_points_to_analyze():
    at = new_app()
    at.switch_page("pages/layers.py").run()
    check_clean(at)
    assert "No clip yet" in at.info[0].value


def test_layers_without_bundled_samples_says_so(monkeypatch):
    import ui.resources

    at = upload(new_app(), "made.wav", noise_wav(2.0, seed=4))
    monkeypatch.setattr(ui.resources, "samples", lambda: [])
    at.switch_page("pages/layers.py").run()
    check_clean(at)
    assert any(c.value == "No bundled samples were found in assets/samples." for c in at.caption)
    assert not [b for b in at.button if b.key == "build_index"]


def test_layers_tree_navigation_and_channel_samples(predictor, sample):
    at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
    at.switch_page("pages/layers.py").run()
    check_clean(at)
    waveform = load_audio(sample.path, predictor.feature_config.sample_rate)
    activations = predictor.analyze(waveform).activations

    at.radio(key="layers_stage").set_value("layer2").run()
    at.radio(key="layers_block").set_value("layer2.block1").run()
    at.radio(key="layers_sub").set_value("bn2").run()
    check_clean(at)
    values = activations["layer2.block1.bn2"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Shape (channels × freq × time)"] == " × ".join(map(str, values.shape))
    assert metrics["Max"] == f"{values.max():.3g}"
    assert metrics["Negative (a ReLU would zero)"] == f"{np.mean(values < 0):.1%}"

    at.radio(key="layers_stage").set_value("stem").run()
    at.radio(key="layers_sub").set_value("relu").run()
    check_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Zeros (after ReLU)"] == f"{np.mean(activations['stem.relu'] == 0):.1%}"

    channel = at.selectbox(key="layers_channel_stem.relu")
    assert channel.value == int(np.argmax(activations["stem.relu"].mean(axis=(1, 2))))
    channel.select_index(3).run()
    selected = at.selectbox(key="layers_channel_stem.relu").value
    assert selected == int(np.argsort(-activations["stem.relu"].mean(axis=(1, 2)), kind="stable")[3])
    at.button(key="build_index").click().run()
    check_clean(at)
    ranked = [text for text in markdown(at) if text[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(ranked) == 5
    # The clips listed are those whose mean activation of that channel is highest, computed here
    # independently (batched forward passes; bf16 rounding may swap near-ties, hence the slack).
    clips = list_samples()
    means = []
    for start in range(0, len(clips), 25):
        features = predictor.logmel([predictor.load(c.path) for c in clips[start : start + 25]])
        with torch.no_grad():
            _, activations = predictor.forward(features, return_activations=True)
        means.append(activations["stem.relu"][:, selected].float().mean(dim=(1, 2)))
    order = torch.cat(means).argsort(descending=True).tolist()
    shown = [next(c.name for c in clips if f"`{c.name}`" in text) for text in ranked]
    assert shown[0] in {clips[i].name for i in order[:2]}
    assert set(shown) <= {clips[i].name for i in order[:8]}

    at.switch_page("pages/analyze.py").run()
    at.switch_page("pages/layers.py").run()
    assert at.radio(key="layers_sub").value == "relu"  # the node survives a trip to another page
    assert at.radio(key="layers_stage").value == "stem"


def test_compare_class_samples_and_two_clips(predictor, sample):
    made = noise_wav(3.0, seed=3)
    at = upload(new_app(), "made.wav", made)
    at.switch_page("pages/compare.py").run()
    check_clean(at)
    at.selectbox(key="compare_class").set_value(sample.label).run()
    verdicts = [text for text in markdown(at) if text.startswith("Predicted ")]
    assert len(verdicts) == 2
    assert all(("✅ right" in text) or ("❌ wrong" in text) for text in verdicts)

    a, b = at.selectbox(key="compare_a"), at.selectbox(key="compare_b")
    assert a.value.startswith("📄 made.wav")
    assert b.value.startswith("📦")  # by default a bundled clip of another class than A's predicted one
    assert not b.value.endswith(class_label(expected_top(predictor, made)))
    b.set_value(next(option for option in b.options if sample.name in option)).run()
    check_clean(at)
    top = class_info(expected_top(predictor, sample.path))
    assert sum(text.startswith(f"**1. {top.emoji} {top.display_name}**") for text in top_lines(at)) >= 1
    assert any("The maps differ most at" in c.value for c in at.caption)
    at.selectbox(key="compare_node").set_value("layer4.block1.out").run()
    check_clean(at)
    at.selectbox(key="compare_b").set_value(at.selectbox(key="compare_a").value).run()
    assert any("identical activations" in c.value for c in at.caption)


def test_compare_keeps_two_uploads_of_the_same_name_apart():
    at = upload(new_app(), "a.wav", noise_wav(3.0, seed=1))
    at = upload(at, "a.wav", noise_wav(7.0, seed=2))  # the same name, another (longer) recording
    at.switch_page("pages/compare.py").run()
    check_clean(at)
    clip_a = at.selectbox(key="compare_a")
    same_name = [option for option in clip_a.options if option.startswith("📄 a.wav")]
    assert len(same_name) == 2 and clip_a.value == same_name[0]  # newest first
    captions = [c.value for c in at.caption]
    assert any(c.startswith("upload · 7.0 s") and "window" in c for c in captions)  # the long one: which window
    clip_a.set_value(same_name[1]).run()
    check_clean(at)
    assert any(c.value.startswith("upload · 3.0 s") for c in at.caption)
    assert not any(c.value.startswith("upload · 7.0 s") for c in at.caption)


def test_model_page_without_metrics(monkeypatch, tmp_path):
    import ui.resources

    monkeypatch.setattr(ui.resources, "METRICS_PATH", tmp_path / "missing.json")
    at = new_app()
    at.switch_page("pages/model.py").run()
    check_clean(at)
    assert any("assets/metrics.json is missing" in info.value for info in at.info)
    assert at.dataframe[0].value["parameters"].sum() > 0
    precision = "Runs here in bf16" if bf16_pays_off(torch.device("cpu")) else "Runs here in fp32"
    assert sum(c.value.startswith(precision) for c in at.caption) == 1
    architecture = next(c.value for c in at.caption if c.value.startswith("ResNet-style CNN"))
    assert "referenced to the clip's loudest bin" in architecture and "feature version 2" in architecture


def test_model_page_with_metrics(monkeypatch, tmp_path, predictor):

    names = list(predictor.class_names)
    confusion = np.eye(50, dtype=int) * 7
    confusion[0, 0], confusion[0, 10] = 5, 2  # two dogs heard as rain, a class outside the Animals category
    metrics = {
        "checkpoint": "assets/model.pt", "folds": [5], "num_clips": int(confusion.sum()),
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "per_class": {n: float(confusion[i, i] / confusion[i].sum()) for i, n in enumerate(names)},
        "confusion": confusion.tolist(), "class_names": names, "history": [],
        "cv": {"folds": {"1": 0.845, "5": 0.8075}, "mean": 0.82625, "std": 0.01875, "complete": False},
    }  # fmt: skip
    at = model_page_with(metrics, monkeypatch, tmp_path)
    assert not at.warning  # no training facts to contradict the loaded checkpoint
    shown = {m.label: m.value for m in at.metric}
    assert shown["Accuracy"] == f"{metrics['accuracy']:.1%}"
    assert any(c.value == "Cross-validation so far (2 of 5 folds) of this recipe, each fold held out by its own "
               "model: mean 82.6% ± 1.9% (fold 1 84.5%, fold 5 80.8%)." for c in at.caption)  # fmt: skip
    pairs = at.dataframe[-1].value
    assert len(pairs) == 1 and pairs["clips"].iloc[0] == 2
    at.selectbox(key="confusion_category").set_value("Animals").run()
    check_clean(at)
    assert confusion_shown(at)[0][0] == pytest.approx(5 / 7)  # share of all 7 dogs, not of the 5 in view
    at.toggle(key="confusion_normalise").set_value(False).run()
    check_clean(at)
    assert confusion_shown(at)[0][0] == 5


def test_model_page_warns_when_the_metrics_belong_to_another_checkpoint(monkeypatch, tmp_path, predictor):
    import ui.resources

    shipped = json.loads(ui.resources.METRICS_PATH.read_text())
    assert ui.resources.metrics_describe(shipped, predictor)  # the shipped pair belongs together
    retrained = {**shipped, "training": {**shipped["training"], "seed": 7, "training_seconds": 60.0}}
    at = model_page_with(retrained, monkeypatch, tmp_path)
    assert "computed for another checkpoint" in at.warning[0].value


def model_page_with(metrics: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppTest:
    """The Model page run with ``metrics`` as the shipped metrics file."""
    import ui.resources

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    monkeypatch.setattr(ui.resources, "METRICS_PATH", path)
    at = new_app()
    at.switch_page("pages/model.py").run()
    check_clean(at)
    return at


def plotted(values: dict | list) -> np.ndarray:
    """An array as the browser gets it: Plotly sends NumPy arrays base64-encoded."""
    if isinstance(values, list):
        return np.asarray(values)
    shape = [int(n) for n in values.get("shape", str(-1)).split(",")]
    return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).reshape(shape)


def traces(at: AppTest, kind: str) -> list[list[dict]]:
    """Each chart's traces of one kind ("heatmap", "bar"...), in page order."""
    specs = [json.loads(chart.proto.spec) for chart in plotly_charts(at)]
    return [[trace for trace in spec["data"] if trace["type"] == kind] for spec in specs]


def heatmaps(at: AppTest) -> list[list[np.ndarray]]:
    return [[plotted(trace["z"]) for trace in chart] for chart in traces(at, "heatmap")]


def confusion_shown(at: AppTest) -> np.ndarray:
    return next(maps[0] for maps in heatmaps(at) if maps)


def test_cv_summary_of_a_complete_cross_validation_and_of_none():
    from ui.components import cv_summary

    cv = {"folds": {str(f): a for f, a in zip(range(1, 6), (0.8, 0.8, 0.8, 0.8, 0.9))}, "mean": 0.82,
          "std": 0.04, "complete": True}  # fmt: skip
    assert cv_summary(cv).startswith("5-fold cross-validation of this recipe") and "fold 5 90.0%" in cv_summary(cv)
    assert cv_summary(None) is None
    assert cv_summary({"folds": {}, "mean": None, "std": None, "complete": False, "recipe": None}) is None


@contextlib.contextmanager
def serving(
    monkeypatch, path: Path, config: ModelConfig, features: FeatureConfig, metadata: dict | None = None
) -> Iterator[None]:
    """Run the app on a freshly initialised checkpoint of another shape (or record) than the shipped one."""
    torch.manual_seed(0)
    save_checkpoint(path, AudioCNN(config).eval(), features, list(CLASS_NAMES), metadata)
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setenv("AUDIOCNN_CHECKPOINT", str(path))  # the launch default, as a person would set it
    try:
        yield
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


def test_every_page_serves_a_model_without_stem_pool(monkeypatch, tmp_path, sample):
    """The ``fullres`` architecture (no stem max-pool) must work in the app before one is shipped."""
    config = ModelConfig(stem_channels=16, widths=(16, 32, 32, 64), blocks=(1, 1, 1, 1), stem_pool=False)
    with serving(monkeypatch, tmp_path / "fullres.pt", config, FeatureConfig()):
        at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
        check_clean(at)
        at.switch_page("pages/layers.py").run()
        at.radio(key="layers_stage").set_value("stem").run()
        at.radio(key="layers_sub").set_value("stem out").run()
        check_clean(at)
        assert any("unpooled" in m for m in markdown(at))
        at.switch_page("pages/model.py").run()
        check_clean(at)
        assert any("a 7×7 stem without max-pool" in c.value for c in at.caption)


def test_every_page_follows_the_feature_settings_of_the_checkpoint(monkeypatch, tmp_path, sample):
    """Front-end settings and depth live in the checkpoint: a model trained on finer frames and fewer
    mels, with two stages, must be served without a code change."""
    features = FeatureConfig(hop_length=256, n_mels=96)
    path = tmp_path / "hop256.pt"
    with serving(monkeypatch, path, TINY_MODEL, features):
        at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
        check_clean(at)
        cam_layer = at.radio(key="cam_layer")  # a two-stage model: its deepest stage stands in for layer3
        assert list(cam_layer.options) == ["stem", "layer1", "layer2"] and cam_layer.value == "layer2"
        served = Predictor.from_checkpoint(path).logmel(np.zeros(features.clip_samples, np.float32))
        assert served.shape[-2:] == (96, 431)
        at.switch_page("pages/layers.py").run()
        check_clean(at)
        at.switch_page("pages/model.py").run()
        check_clean(at)
        assert any("hop 256" in c.value for c in at.caption)
        assert any(m.value == "96 × 431" for m in at.metric)


def test_top_class_names_the_class_and_its_probability():
    from ui.components import top_class

    probabilities = np.full(len(CLASS_NAMES), 0.14 / (len(CLASS_NAMES) - 1))
    probabilities[CLASS_NAMES.index("rooster")] = 0.86
    info = class_info("rooster")
    assert top_class(Prediction(probabilities, CLASS_NAMES)) == f"{info.emoji} {info.display_name} (86%)"


def test_model_page_says_a_model_was_fine_tuned(monkeypatch, tmp_path):
    config = ModelConfig(stem_channels=16, widths=(16, 32), blocks=(1, 1))
    start = {"path": "runs/base/best.pt", "train_folds": [1, 2, 3, 4], "epochs_trained": 300}
    with serving(monkeypatch, tmp_path / "tuned.pt", config, FeatureConfig(), {"initialised_from": start}):
        at = new_app()
        at.switch_page("pages/model.py").run()
        check_clean(at)
        assert any(c.value.startswith("Fine-tuned from a model trained 300 epochs on folds [1, 2, 3, 4]")
                   for c in at.caption)  # fmt: skip
