"""The app's robustness curves and the robustness evaluation: wiring checked against known answers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from audiocnn.features import FeatureConfig
from audiocnn.inference import Prediction, Predictor
from audiocnn.robustness import PANEL_FAMILIES, robustness_curves
from training import robustness
from training.robustness import find_condition


class PeakReadingPredictor:
    """Stands in for a model whose class-0 probability is the window's peak amplitude (class 1 takes the rest).

    The quieter curve then has a known answer: the clean peak scaled by each gain.
    """

    feature_config = FeatureConfig()
    class_names = ("a", "b", "c")

    def __init__(self) -> None:
        self.batches = 0

    def predict_batch(self, waveforms):
        self.batches += 1
        results = []
        for w in waveforms:
            peak = float(np.max(np.abs(w)))
            results.append(Prediction(np.array([peak, 1 - peak, 0.0]), self.class_names))
        return results


def test_curves_put_each_strength_at_its_point_in_one_batched_call():
    rate = FeatureConfig().sample_rate
    t = np.arange(5 * rate) / rate
    window = (0.8 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    model = PeakReadingPredictor()
    curves = robustness_curves(model, window, class_index=0)
    assert model.batches == 1
    quieter = curves[0]
    assert quieter.family.title == "Quieter" and quieter.labels[0] == "0 dB"
    gains = [0.0] + [float(label.split()[0]) for label in quieter.labels[1:]]
    np.testing.assert_allclose(quieter.class_probability, 0.8 * 10 ** (np.array(gains) / 20), rtol=1e-5)
    # Class 0 wins while the peak is above 0.5, class 1 once the window is quieter than that.
    np.testing.assert_array_equal(quieter.top_index, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(quieter.keeps_top_class, [True, False, False, False, False])
    other = robustness_curves(model, window, class_index=1)[0]  # the explained class, not always class 0
    np.testing.assert_allclose(other.class_probability, 1 - quieter.class_probability, rtol=1e-5)
    for curve in curves:  # every curve starts at the same clean window
        assert curve.class_probability[0] == pytest.approx(0.8, rel=1e-6)
        assert len(curve.class_probability) == len(curve.family.points)


def test_curves_refuse_a_class_out_of_range():
    with pytest.raises(ValueError, match="out of range"):
        robustness_curves(PeakReadingPredictor(), np.ones(10, np.float32), class_index=3)


def test_panel_on_the_real_model_keeps_a_clear_bark(shipped_checkpoint):
    """The bundled bark at full level stays Dog under the panel's mildest damage (a real-model smoke test)."""
    model = Predictor.from_checkpoint(shipped_checkpoint)
    window = model._window(model.load(ROOT / "assets" / "samples" / "5-203128-A-0.flac"))
    dog = model.class_names.index("dog")
    curves = robustness_curves(model, window, dog)
    clean = model.predict(window).probabilities[dog]
    for curve in curves:
        assert curve.class_probability[0] == pytest.approx(clean, abs=2e-3)  # bf16 batch-size noise
        assert curve.top_index[1] == dog, curve.family.title
    assert len(PANEL_FAMILIES) == len(curves)


def test_paired_interval_known_answers():
    same = np.array([True, False] * 50)
    assert robustness.paired_change_interval(same, same) == (0.0, 0.0)
    assert robustness.paired_change_interval(np.ones(100, bool), np.zeros(100, bool)) == (-1.0, -1.0)
    low, high = robustness.paired_change_interval(np.ones(200, bool), np.arange(200) % 4 != 0)
    assert -0.32 < low < -0.25 < high < -0.18  # 25 % lost: the interval straddles -25 points


def test_evaluation_scores_conditions_and_keeps_other_metrics(tiny_checkpoint, tiny_esc50, tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.5, "robustness": {"stale": True}}))
    argv = ["--data-dir", str(tiny_esc50), "--checkpoint", str(tiny_checkpoint), "--label", "tiny",
            "--checkpoint", str(tiny_checkpoint), "--label", "again",
            "--conditions", "gain -40 dB", "shift +1 s", "--output", str(metrics)]  # fmt: skip
    assert robustness.main(argv) == 0
    document = json.loads(metrics.read_text())
    assert document["accuracy"] == 0.5
    table = document["robustness"]
    assert table["num_clips"] == 50 and table["conditions"] == ["clean", "gain -40 dB", "shift +1 s"]
    rows = table["models"]["tiny"]["conditions"]
    assert rows == table["models"]["again"]["conditions"]  # identical inputs: identical figures
    assert rows[0]["change"] == 0.0 and rows[0]["change_95"] == [0.0, 0.0]
    for row in rows[1:]:
        assert row["change"] == pytest.approx(row["accuracy"] - rows[0]["accuracy"])
        assert row["change_95"][0] <= row["change"] <= row["change_95"][1]
    text = capsys.readouterr().out
    assert "gain -40 dB" in text and "tiny" in text and "again" in text


def test_correct_under_counts_against_the_target(tiny_checkpoint, tiny_esc50):
    model = Predictor.from_checkpoint(tiny_checkpoint)
    clips = [model.load(p) for p in sorted((tiny_esc50 / "audio").glob("5-*"))[:6]]
    tops = np.array([p.top_index for p in model.predict_batch(clips)])
    clean = find_condition("clean")
    np.testing.assert_array_equal(robustness.correct_under(model, clips, tops, clean), np.ones(6, bool))
    np.testing.assert_array_equal(robustness.correct_under(model, clips, (tops + 1) % 50, clean), np.zeros(6, bool))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--conditions", "louder"], "unknown condition 'louder'"),
        (["--label", "a", "--label", "b"], "2 --label for 1 --checkpoint"),
    ],
)
def test_clear_errors(tiny_checkpoint, tiny_esc50, capsys, argv, message):
    base = ["--data-dir", str(tiny_esc50), "--checkpoint", str(tiny_checkpoint)]
    assert robustness.main(base + argv) == 2
    assert message in capsys.readouterr().err


def test_module_entry_point(tiny_checkpoint, tiny_esc50):
    done = subprocess.run(
        [sys.executable, "-m", "training.robustness", "--data-dir", str(tiny_esc50), "--checkpoint",
         str(tiny_checkpoint), "--limit", "3", "--conditions", "white noise 20 dB SNR", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_clips"] == 3
