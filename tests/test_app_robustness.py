"""The robustness views in the app: the Analyze panel shows the library's curves, the Model page the stored table."""

from __future__ import annotations

import json

import numpy as np
from test_app import check_clean, model_page_with, new_app, plotted, traces, upload

from audiocnn.audio import load_audio
from audiocnn.inference import Predictor
from audiocnn.robustness import PANEL_FAMILIES, robustness_curves
from audiocnn.samples import list_samples
from ui.robustness import STEEP_MEANS


def test_panel_on_demand_plots_the_library_curves(shipped_checkpoint):
    sample = list_samples()[0]
    at = upload(new_app(), sample.path.name, sample.path.read_bytes(), "audio/flac")
    assert not any(STEEP_MEANS in c.value for c in at.caption)  # off until asked
    at.toggle(key="robustness").set_value(True).run()
    check_clean(at)
    model = Predictor.from_checkpoint(shipped_checkpoint)
    window = model._window(load_audio(sample.path, model.feature_config.sample_rate))
    top = model.predict(window).top_index
    expected = robustness_curves(model, window, top)
    lines = next(chart for chart in traces(at, "scatter") if len(chart) == 2 * len(PANEL_FAMILIES))
    for curve, (explained, best) in zip(expected, zip(lines[::2], lines[1::2])):
        assert list(explained["x"]) == curve.labels
        np.testing.assert_allclose(plotted(explained["y"]), curve.class_probability, atol=1e-6)
        np.testing.assert_allclose(plotted(best["y"]), curve.top_probability, atol=1e-6)
    caption = next(c.value for c in at.caption if STEEP_MEANS in c.value)
    assert model.class_names[top].replace("_", " ").lower() in caption.lower()


def test_model_page_shows_the_stored_robustness_table(monkeypatch, tmp_path):
    import ui.resources

    shipped = json.loads(ui.resources.METRICS_PATH.read_text())
    table = {
        "folds": [5], "num_clips": 400, "conditions": ["clean", "gain -20 dB"],
        "models": {"shipped": {"checkpoint": "assets/model.pt", "conditions": [
            {"condition": "clean", "family": "clean", "accuracy": 0.855, "change": 0.0, "change_95": [0.0, 0.0]},
            {"condition": "gain -20 dB", "family": "gain", "accuracy": 0.798, "change": -0.057,
             "change_95": [-0.08, -0.035]},
        ]}},
    }  # fmt: skip
    at = model_page_with({**shipped, "robustness": table}, monkeypatch, tmp_path)
    frame = next(df.value for df in at.dataframe if "condition" in df.value.columns)
    assert list(frame["condition"]) == ["clean", "gain -20 dB"]
    assert list(frame["shipped: accuracy"]) == ["85.5%", "79.8%"]
    assert frame["shipped: change"].iloc[1] == "-5.7 [-8.0, -3.5]"
    without = model_page_with({k: v for k, v in shipped.items() if k != "robustness"}, monkeypatch, tmp_path)
    assert any("python -m training.robustness" in i.value for i in without.info)
