"""Error analysis by example in AppTest with the shipped model: confusion cells you can hear and send to
Analyze, the training history of every stage, and the Map page with the current clip's neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_app import check_clean, new_app, plotly_charts, plotted, serving

from audiocnn.features import FeatureConfig
from audiocnn.labels import CLASS_NAMES, class_info
from audiocnn.model import ModelConfig
from audiocnn.samples import list_samples
from ui import confusions
from ui.plots import class_label
from ui.resources import METRICS_PATH

DOG = CLASS_NAMES.index("dog")
CLAPPING, RAIN = CLASS_NAMES.index("clapping"), CLASS_NAMES.index("rain")


@pytest.fixture(scope="module")
def shipped_metrics() -> dict:
    return json.loads(METRICS_PATH.read_text(encoding="utf-8"))


def model_page():
    at = new_app()
    at.switch_page("pages/model.py").run()
    check_clean(at)
    return at


def listed_clips(at) -> list[str]:
    return [m.value.split("`")[1] for m in at.markdown if m.value.startswith("`5-")]


def test_a_confusion_cell_lists_its_clips_plays_them_and_sends_one_to_analyze(shipped_metrics):
    at = model_page()
    assert (at.selectbox(key=confusions.TRUE_KEY).value, at.selectbox(key=confusions.PREDICTED_KEY).value) == (
        CLAPPING, RAIN)  # the most-confused pair is shown first (3 clips, tied with fireworks -> clapping)  # fmt: skip
    expected = [c.name for c in confusions.cell(confusions.records(shipped_metrics), CLAPPING, RAIN)]
    assert listed_clips(at) == expected and len(expected) == 3
    assert len(at.get("audio")) == 3  # every misclassified clip plays without the dataset
    first = next(m.value for m in at.markdown if m.value.startswith(f"`{expected[0]}`"))
    record = next(r for r in shipped_metrics["held_out_clips"]["clips"] if r["clip"] == expected[0])
    assert f"{class_label('rain')} {record['top'][0][1]:.1%}" in first

    at.selectbox(key=confusions.TRUE_KEY).set_value(DOG).run()
    at.selectbox(key=confusions.PREDICTED_KEY).set_value(DOG).run()
    check_clean(at)
    dogs = [r for r in shipped_metrics["held_out_clips"]["clips"] if r["target"] == DOG and r["top"][0][0] == DOG]
    assert sorted(listed_clips(at)) == sorted(r["clip"] for r in dogs)
    assert any(c.value.startswith("Clips marked 🔇 are not bundled") for c in at.caption)  # correct dogs: not all

    at.selectbox(key=confusions.TRUE_KEY).set_value(CLAPPING).run()
    at.selectbox(key=confusions.PREDICTED_KEY).set_value(RAIN).run()
    at.button(key=f"cell_contrast_{expected[0]}").click().run()
    check_clean(at)
    assert at.session_state[confusions.CONTRAST_KEY] == (CLAPPING, RAIN)  # for the contrastive map
    assert any("What does the CNN hear" in t.value for t in at.title)  # Analyze now shows the clip
    assert at.subheader[0].value.endswith(expected[0])
    assert any(c.value.startswith("sample · 5.0 s · held-out fold 5") and "Clapping" in c.value for c in at.caption)


def test_most_confused_pairs_and_per_class_follow_the_category(shipped_metrics):
    at = model_page()
    at.selectbox(key="confusion_category").set_value("Animals").run()
    check_clean(at)
    pairs = next(frame.value for frame in at.dataframe if "true" in frame.value.columns)  # later sections add tables
    animals = {class_label(n) for n in CLASS_NAMES if class_info(n).category == "Animals"}
    assert len(pairs) and set(pairs["true"]) <= animals
    assert class_label("fireworks") not in set(pairs["true"])
    bars = [t for chart in plotly_charts(at) for t in json.loads(chart.proto.spec)["data"] if t["type"] == "bar"]
    assert {label for t in bars for label in t["y"]} == animals


def test_the_model_page_shows_every_training_stage():
    at = model_page()
    assert any(c.value.startswith("stage 1: 300 epochs at lr 0.002") and "stage 2: 10 epochs" in c.value
               for c in at.caption)  # fmt: skip
    assert any("the curves show every stage" in c.value for c in at.caption)
    curves = lambda: next(json.loads(c.proto.spec) for c in plotly_charts(at)  # noqa: E731
                          if "Learning rate (log)" in json.dumps(json.loads(c.proto.spec)["layout"]))  # fmt: skip
    loss = next(t for t in curves()["data"] if t["name"] == "train_loss")
    assert len(loss["x"]) == 310
    at.radio(key="history_stage").set_value(at.radio(key="history_stage").options[2]).run()
    check_clean(at)
    assert len(next(t for t in curves()["data"] if t["name"] == "train_loss")["x"]) == 10


def test_the_map_places_the_current_clip_and_sends_a_neighbour_to_compare():
    at = new_app()
    at.switch_page("pages/map.py").run()
    check_clean(at)
    assert "to place it on the map" in at.info[0].value
    sample = list_samples()[0]
    at.switch_page("pages/analyze.py").run()
    at.button(key="sample_go").click().run()
    at.switch_page("pages/map.py").run()
    check_clean(at)
    assert at.markdown[0].value == f"### The model hears `{sample.name}` as most like these"
    neighbours = [m.value for m in at.markdown if m.value[:2] == "**" and "similarity" in m.value]
    assert len(neighbours) == 8 and not any(sample.name in text for text in neighbours)  # not its own neighbour
    similarities = [float(text.rsplit(" ", 1)[1]) for text in neighbours]
    assert similarities == sorted(similarities, reverse=True) and 0 < similarities[-1] <= similarities[0] <= 1
    assert len(at.get("audio")) == 8  # only playable clips by default
    spec = json.loads(plotly_charts(at)[0].proto.spec)
    assert any(t.get("name") == "current clip" for t in spec["data"])
    at.button(key=next(b.key for b in at.button if b.key.endswith("_compare"))).click().run()
    check_clean(at)
    assert at.selectbox(key="compare_a").value == f"📦 {sample.name} (sample)"
    assert at.selectbox(key="compare_b").value.startswith("📦 5-") and at.selectbox(key="compare_b").value != (
        at.selectbox(key="compare_a").value)  # fmt: skip


def test_another_checkpoint_gets_its_own_map(monkeypatch, tmp_path):
    import ui.embedding

    available = ui.embedding._available_clips()[:12]
    monkeypatch.setattr(ui.embedding, "_available_clips", lambda: available)
    config = ModelConfig(stem_channels=8, widths=(8, 16), blocks=(1, 1))
    with serving(monkeypatch, tmp_path / "other.pt", config, FeatureConfig()):
        at = new_app()
        at.switch_page("pages/map.py").run()
        check_clean(at)
        assert any("the 12 held-out (fold 5) clips this machine can open, computed for this checkpoint" in c.value
                   for c in at.caption)  # fmt: skip
        spec = json.loads(plotly_charts(at)[0].proto.spec)
        assert sum(plotted(t["x"]).size for t in spec["data"] if t["mode"] == "markers") == 12


def test_map_rows_are_the_shipped_records_clips(shipped_metrics):
    from audiocnn.embedding import ReferenceClips
    from ui.embedding import EMBEDDING_PATH

    names = ReferenceClips.load(EMBEDDING_PATH).names
    assert sorted(names) == sorted(r["clip"] for r in shipped_metrics["held_out_clips"]["clips"])
    assert np.unique(names).size == 400
