"""The dashboard serving another checkpoint than the shipped one: by flag, by environment variable
and from the sidebar; bad checkpoints refused with the previous model kept; two sessions on two
models; the Compare page's two-model view and the Model page's held-out evaluation (AppTest).

AppTest runs ``app.py`` (and so the sidebar) only on its first run; later runs execute the page
alone. Sidebar widgets are therefore used on the first run, and what a choice serves is checked on
the pages (the real-browser test drives the sidebar on every run).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from conftest import TINY_MODEL, audio_bytes
from streamlit.testing.v1 import AppTest
from test_app import ROOT, TIMEOUT, check_clean, plotly_charts, plotted, top_lines, upload

from audiocnn.audio import load_audio
from audiocnn.checkpoint import DEFAULT_CHECKPOINT, checkpoint_payload
from audiocnn.evaluation import evaluate_folds
from audiocnn.features import FeatureConfig
from audiocnn.inference import Predictor
from audiocnn.labels import CLASS_NAMES, class_info
from audiocnn.model import AudioCNN
from audiocnn.samples import list_samples
from ui import model_choice


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts as a new ``streamlit run``: no cached models, no launch options but its own."""
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setattr(sys, "argv", ["app.py"])
    for name in (model_choice.CHECKPOINT_ENV, model_choice.RUNS_ENV, model_choice.DATA_ENV):
        monkeypatch.delenv(name, raising=False)
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(scope="module")
def sample() -> bytes:
    """The first second of a bundled clip as a WAV: within the tiny run's 1 s window, so every model
    ranks the whole clip (a longer one would get a timeline, and a window each model picks itself)."""
    waveform = load_audio(list_samples()[0].path, 22050)
    return audio_bytes(waveform[:22050, None], 22050, "WAV", "FLOAT")


def new_app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()


def expected_first_line(path: Path, sample: bytes) -> str:
    model = Predictor.from_checkpoint(path)
    top = class_info(model.predict(load_audio(sample, model.feature_config.sample_rate)).top_label)
    return f"**1. {top.emoji} {top.display_name}**"


def model_caption(at: AppTest) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Checkpoint `"))


def serves(at: AppTest, path: Path, sample: bytes) -> None:
    """The session's Analyze page ranks the sample as ``path``'s model does, and its Model page names ``path``."""
    at = upload(at, "dog.wav", sample)
    check_clean(at)
    assert top_lines(at)[0].startswith(expected_first_line(path, sample))
    at.switch_page("pages/model.py").run()
    check_clean(at)
    assert model_caption(at).startswith(f"Checkpoint `{model_choice.display_path(path)}`")
    at.switch_page("pages/analyze.py").run()


def test_a_trained_run_opened_by_flag(monkeypatch, trained_run, sample):
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(trained_run)])
    at = new_app()
    check_clean(at)
    assert at.selectbox(key="model_picker").value == str(trained_run)
    assert expected_first_line(trained_run, sample) != expected_first_line(DEFAULT_CHECKPOINT, sample)
    serves(at, trained_run, sample)
    at.switch_page("pages/model.py").run()
    assert any("train folds: [1, 2, 3]" in c.value for c in at.caption)  # the run's own record and curves
    history = torch.load(trained_run, weights_only=True)["metadata"]["history"]
    curves = [trace for chart in plotly_charts(at) for trace in json.loads(chart.proto.spec)["data"]
              if trace.get("name") == "val_accuracy"]  # fmt: skip
    assert list(plotted(curves[0]["y"])) == pytest.approx([row["val_accuracy"] for row in history])


def test_a_trained_run_opened_by_environment_variable(monkeypatch, trained_run, sample):
    monkeypatch.setenv("AUDIOCNN_CHECKPOINT", str(trained_run))
    serves(new_app(), trained_run, sample)


def test_a_trained_run_picked_in_the_sidebar(monkeypatch, trained_run, sample):
    monkeypatch.setenv("AUDIOCNN_RUNS_DIR", str(trained_run.parent.parent))
    at = new_app()
    picker = at.selectbox(key="model_picker")
    assert picker.value == str(DEFAULT_CHECKPOINT)
    labels = picker.options  # AppTest lists the labels the browser shows
    assert labels[0].startswith("shipped model · 4-stage CNN 64–512 ch") and len(labels) == 3
    assert not any("logmels" in label for label in labels)  # the run's feature cache is no model
    for path in (trained_run, trained_run.with_name("last.pt")):
        label = next(label for label in labels if label.startswith(f"{path} · "))
        assert "2-stage CNN 8–16 ch · folds 1-3" in label and "held-out accuracy unknown" in label
    picker.set_value(str(trained_run)).run()
    check_clean(at)
    serves(at, trained_run, sample)


def unsafe(path: Path) -> Path:
    class Code:
        def __reduce__(self):
            return print, ("code ran",)

    torch.save({"format": "audiocnn-checkpoint", "hook": Code()}, path)
    return path


def other_architecture(path: Path) -> Path:
    payload = checkpoint_payload(AudioCNN(TINY_MODEL), FeatureConfig(), list(CLASS_NAMES))
    payload["model_config"]["architecture"] = "transformer-v9"
    torch.save(payload, path)
    return path


def not_a_checkpoint(path: Path) -> Path:
    path.write_bytes(b"RIFF....WAVEfmt not a checkpoint")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (not_a_checkpoint, "corrupt or truncated"),
        (unsafe, "Refused to load"),
        (other_architecture, "incompatible with this code"),
        (lambda path: path, "Checkpoint not found"),
    ],
    ids=["not-a-checkpoint", "unsafe", "other-architecture", "missing"],
)
def test_a_bad_checkpoint_keeps_the_previous_model(monkeypatch, tmp_path, trained_run, sample, make, message):
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(trained_run)])
    at = new_app()
    bad = make(tmp_path / "bad.pt")
    at.text_input(key="model_picker_path").input(str(bad)).run()
    check_clean(at)
    assert message in at.error[0].value and "The model served before stays" in at.error[0].value
    serves(at, trained_run, sample)


def test_a_bad_launch_checkpoint_falls_back_to_the_shipped_model(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(not_a_checkpoint(tmp_path / "x.pt"))])
    at = new_app()
    check_clean(at)
    assert "Serving the shipped model instead" in at.error[0].value
    assert at.selectbox(key="model_picker").value == str(DEFAULT_CHECKPOINT)


def test_two_sessions_serving_different_models_get_their_own_results(monkeypatch, trained_run, sample):
    monkeypatch.setenv("AUDIOCNN_RUNS_DIR", str(trained_run.parent.parent))
    shipped, tiny = new_app(), new_app()
    tiny.selectbox(key="model_picker").set_value(str(trained_run)).run()
    for at in (shipped, tiny, shipped):  # interleaved runs in one process share every process-wide cache
        at = upload(at, "dog.wav", sample)
        check_clean(at)
    assert top_lines(shipped)[0].startswith(expected_first_line(DEFAULT_CHECKPOINT, sample))
    assert top_lines(tiny)[0].startswith(expected_first_line(trained_run, sample))


def cka_map(at: AppTest) -> tuple[np.ndarray, list[str], list[str]]:
    for chart in plotly_charts(at):
        spec = json.loads(chart.proto.spec)
        for trace in spec["data"]:
            if trace["type"] == "heatmap" and trace.get("colorbar", {}).get("title", {}).get("text") == "CKA":
                return plotted(trace["z"]), trace["y"], trace["x"]
    raise AssertionError("no CKA map on the page")


def test_compare_two_models_on_one_clip_and_over_the_samples(monkeypatch, four_stage_checkpoint, tmp_path, sample):
    """The shipped model (A) against another checkpoint (B): rankings, explanations, agreement and CKA."""
    import ui.resources

    subset = list_samples()[::20]  # 5 clips of 5 classes keep the test fast; the app surveys all 100
    monkeypatch.setattr(ui.resources, "samples", lambda: subset)
    runs = tmp_path / "runs" / "b"
    runs.mkdir(parents=True)
    other = shutil.copy(four_stage_checkpoint, runs / "best.pt")
    monkeypatch.setenv("AUDIOCNN_RUNS_DIR", str(runs.parent))
    at = upload(new_app(), subset[0].path.name, subset[0].path.read_bytes(), "audio/flac")
    at.switch_page("pages/compare.py").run()
    check_clean(at)
    at.selectbox(key="compare_model_b").set_value(str(other)).run()
    check_clean(at)
    shipped, b = Predictor.from_checkpoint(), Predictor.from_checkpoint(other)
    waveform = load_audio(subset[0].path, shipped.feature_config.sample_rate)
    firsts = [line for line in top_lines(at) if line.startswith("**1. ")]
    for line, model in zip(firsts[-2:], (shipped, b)):
        top = class_info(model.predict(waveform).top_label)
        assert line.startswith(f"**1. {top.emoji} {top.display_name}**")
    at.radio(key="compare_models_method").set_value("Occlusion").run()
    check_clean(at)
    at.button(key="compare_models_go").click().run()
    check_clean(at)
    cka, rows, columns = cka_map(at)
    assert rows == ["stem", "layer1", "layer2", "layer3", "layer4", "pool"] == columns
    assert np.all((cka >= 0) & (cka <= 1))
    tops = [(shipped.predict(w).top_label, b.predict(w).top_label)
            for w in (load_audio(s.path, 22050) for s in subset)]  # fmt: skip
    agreement = np.mean([x == y for x, y in tops])
    assert {m.label: m.value for m in at.metric}["Same top class"] == f"{agreement:.0%}"


def test_a_model_against_a_copy_of_itself_is_identical_at_every_stage(monkeypatch, four_stage_checkpoint, tmp_path):
    """Known answer: two files with the same weights agree on every clip and have CKA 1 on the diagonal."""
    import ui.resources

    monkeypatch.setattr(ui.resources, "samples", lambda: list_samples()[::25])
    copy = tmp_path / "runs" / "copy.pt"
    copy.parent.mkdir()
    shutil.copy(four_stage_checkpoint, copy)
    monkeypatch.setenv("AUDIOCNN_CHECKPOINT", str(four_stage_checkpoint))
    monkeypatch.setenv("AUDIOCNN_RUNS_DIR", str(copy.parent))
    at = new_app()
    at.switch_page("pages/compare.py").run()
    at.selectbox(key="compare_model_b").set_value(str(copy)).run()
    at.button(key="compare_models_go").click().run()
    check_clean(at)
    cka, rows, columns = cka_map(at)
    assert rows == columns and np.diag(cka) == pytest.approx(np.ones(len(rows)), abs=1e-6)
    assert {m.label: m.value for m in at.metric}["Same top class"] == "100%"
    assert any(s.value == "Both models give every bundled clip the same top class." for s in at.success)


def test_model_page_computes_the_held_out_evaluation_beside_the_checkpoint(monkeypatch, trained_run, tmp_path,
                                                                           tiny_esc50):  # fmt: skip
    run = Path(shutil.copy(trained_run, tmp_path / "best.pt"))
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(run), "--data-dir", str(tiny_esc50)])
    at = new_app()
    at.switch_page("pages/model.py").run()
    check_clean(at)
    assert any("No metrics file belongs to this checkpoint" in info.value for info in at.info)
    at.button(key="model_evaluate").click().run()
    check_clean(at)
    stored = json.loads(model_choice.metrics_path(run).read_text())
    expected = evaluate_folds(Predictor.from_checkpoint(run), tiny_esc50, [5], "x")
    assert stored["folds"] == [5] and stored["num_clips"] == 50 and stored["accuracy"] == expected["accuracy"]
    assert {m.label: m.value for m in at.metric}["Accuracy"] == f"{expected['accuracy']:.1%}"
    assert not at.warning and f"fold 5: {expected['accuracy']:.1%}" in model_caption(at)


def test_model_page_without_a_data_copy_says_how_to_evaluate(monkeypatch, trained_run):
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(trained_run)])
    at = new_app()
    at.switch_page("pages/model.py").run()
    check_clean(at)
    assert any("python -m training.evaluate --checkpoint" in c.value and "--folds 5" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "model_evaluate"]


def test_the_sample_index_belongs_to_the_model_that_built_it(monkeypatch, trained_run, sample):
    """Session 1 (shipped) builds the Layers page's sample index; session 2 (the run) must not see it:
    it is offered its own, and the clips it then lists are the run's."""
    import ui.resources

    subset = list_samples()[::10]
    monkeypatch.setattr(ui.resources, "samples", lambda: subset)
    shipped = upload(new_app(), "dog.wav", sample)
    shipped.switch_page("pages/layers.py").run()
    shipped.button(key="build_index").click().run()
    check_clean(shipped)
    assert not [b for b in shipped.button if b.key == "build_index"]  # built: the answer replaces the button
    monkeypatch.setattr(sys, "argv", ["app.py", "--checkpoint", str(trained_run)])
    run = upload(new_app(), "dog.wav", sample)
    run.switch_page("pages/layers.py").run()
    check_clean(run)
    assert [b for b in run.button if b.key == "build_index"]
    run.button(key="build_index").click().run()
    node = "layer1.block0.relu1"
    channel = run.selectbox(key=f"layers_channel_{node}").value
    model = Predictor.from_checkpoint(trained_run)
    features = model.logmel([model.load(clip.path) for clip in subset])
    with torch.no_grad():
        _, activations = model.forward(features, return_activations=True)
    best = subset[int(activations[node][:, channel].float().mean(dim=(1, 2)).argmax())]
    ranked = [m.value for m in run.markdown if m.value.startswith("1. ")]
    assert f"`{best.name}`" in ranked[0]
