"""The Analyze page's Why panel through AppTest with the shipped model: switching methods, the
faithfulness line of every map, the contrast entry point other pages use, and listening."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_app import check_clean, heatmaps, markdown, new_app, upload

from audiocnn import attribution, faithfulness, listen
from audiocnn.audio import load_audio
from audiocnn.inference import Predictor
from ui import explanations
from ui.plots import class_label


@pytest.fixture(scope="module")
def predictor(shipped_checkpoint) -> Predictor:
    return Predictor.from_checkpoint(shipped_checkpoint)


@pytest.fixture(scope="module")
def dog(predictor):
    """A bundled dog clip: its model window, log-mel and top class."""
    path = next(p for p in sorted((predictor.path.parent / "samples").glob("*-0.flac")))
    window = predictor._window(load_audio(path, predictor.feature_config.sample_rate))
    return path, window, predictor.logmel(window), predictor.predict(window).top_index


def trust_line(at) -> str:
    return next(m for m in markdown(at) if m.startswith("**How far to trust this map**"))


def expected_line(predictor, features, relevance, target) -> str:
    curves = faithfulness.measure(predictor.forward, features, relevance, target, removals=tuple(faithfulness.REMOVALS))
    what = (f"{class_label(predictor.class_names[target[0]])}'s share against "
            f"{class_label(predictor.class_names[target[1]])}") if isinstance(target, tuple) else (
            class_label(predictor.class_names[target]))  # fmt: skip
    return explanations.faithfulness_line(curves[attribution.SELECTION_REMOVAL], what, views=predictor.views)


def test_switching_methods_redraws_the_map_and_its_faithfulness_line(predictor, dog):
    path, _, features, top = dog
    at = upload(new_app(), path.name, path.read_bytes(), "audio/flac")
    check_clean(at)
    hop = predictor.feature_config.hop_length / predictor.feature_config.sample_rate
    default = explanations.default_method([m for m in attribution.CAM_LAYERS])[0]
    assert at.selectbox(key="explain_method").value == explanations.family_of(default)
    relevance = attribution.attribute(predictor.forward, features, top, default, hop)
    assert trust_line(at).endswith(expected_line(predictor, features, relevance, top))
    assert "takes" in trust_line(at) and "a random 10%" in trust_line(at)
    assert "(each cell filled in from its neighbours)" in trust_line(at)  # the removal the default was chosen by
    one_view = torch.softmax(predictor.forward(features), dim=1)[0, top].item()
    assert f"from {one_view:.0%} (its score on the one view the map explains; the prediction averages 2 views)" in (
        trust_line(at))  # fmt: skip

    for family, key in (("Occlusion (time)", "occlusion-time"), ("SmoothGrad", "smoothgrad")):
        at.selectbox(key="explain_method").set_value(family).run()
        check_clean(at)
        assert "cam_layer" not in [r.key for r in at.radio]  # layers only for Grad-CAM
        relevance = attribution.attribute(predictor.forward, features, top, key, hop)
        overlay = next(maps[1] for maps in heatmaps(at) if len(maps) == 2)
        np.testing.assert_allclose(overlay, attribution.display_map(relevance), atol=1e-4)
        assert trust_line(at).endswith(expected_line(predictor, features, relevance, top))
        assert any(c.value.startswith(f"{attribution.METHODS[key].label} of ") for c in at.caption)

    at.selectbox(key="explain_method").set_value("Grad-CAM").run()
    at.radio(key="cam_layer").set_value("layer1").run()
    check_clean(at)
    relevance = attribution.attribute(predictor.forward, features, top, "gradcam-layer1", hop)
    assert trust_line(at).endswith(expected_line(predictor, features, relevance, top))


def test_a_contrast_requested_by_another_page_is_explained(predictor, dog):
    path, _, features, top = dog
    at = upload(new_app(), path.name, path.read_bytes(), "audio/flac")
    other = "rooster"
    at.session_state["contrast_classes"] = (predictor.class_names[top], other)
    at.selectbox(key="explain_method").set_value("Occlusion (time)")
    at.run()
    check_clean(at)
    assert at.toggle(key="contrast_on").value is True
    b = predictor.class_names.index(other)
    hop = predictor.feature_config.hop_length / predictor.feature_config.sample_rate
    relevance = attribution.attribute(predictor.forward, features, (top, b), "occlusion-time", hop)
    assert trust_line(at).endswith(expected_line(predictor, features, relevance, (top, b)))
    at.toggle(key="contrast_on").set_value(False).run()  # applied once: the widgets are the user's again
    assert at.toggle(key="contrast_on").value is False and not any("share against" in m for m in markdown(at))
    at.session_state["contrast_classes"] = ("dog", "dog")
    at.run()
    assert any("two different classes" in w.value for w in at.warning)


def test_listening_plays_both_parts_and_scores_them(predictor, dog):
    path, window, features, top = dog
    at = upload(new_app(), path.name, path.read_bytes(), "audio/flac")
    at.selectbox(key="explain_method").set_value("Occlusion (time)").run()
    at.select_slider(key="listen_keep").set_value(0.3).run()
    check_clean(at)
    hop = predictor.feature_config.hop_length / predictor.feature_config.sample_rate
    relevance = attribution.attribute(predictor.forward, features, top, "occlusion-time", hop)
    heard = listen.listen(predictor, window, relevance, top, 0.3)
    label = class_label(predictor.class_names[top])
    captions = [c.value for c in at.caption]
    assert f"Alone, this part gives {label} {heard.kept_score:.0%}" in captions[-2]
    assert f"Alone, this part gives {label} {heard.removed_score:.0%}" in captions[-1]
    assert len(at.get("audio")) >= 3  # the window, what the model listened to, what it ignored
    assert any(m.startswith("What the model listened to (the top 30%") for m in markdown(at))


def test_model_page_shows_the_faithfulness_table_of_every_method():
    from ui import resources

    held = resources.metrics()["explanations"]["heldout"]
    at = new_app()
    at.switch_page("pages/model.py").run()
    check_clean(at)
    assert "### How faithful are the explanations" in markdown(at)
    table = next(frame.value for frame in at.dataframe if "method" in frame.value.columns)
    assert list(table["method"]) == [attribution.METHODS[key].label for key in held["methods"]]
    layer4 = held["methods"]["gradcam-layer4"]["impute"]["gap"]
    row = table[table["method"] == "Grad-CAM layer4"].iloc[0]
    assert row["gap (imputed from neighbours)"] == f"{layer4['mean']:.2f} ± {layer4['std']:.2f}"
    default = attribution.chosen(resources.metrics()["explanations"], attribution.CAM_LAYERS)
    assert any(c.value.startswith(f"The Analyze page's default is {attribution.METHODS[default].label}")
               for c in at.caption)  # fmt: skip
