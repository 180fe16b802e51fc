"""The shipped checkpoint, its metrics file and the bundled sample clips belong together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiocnn.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from audiocnn.inference import TEST_TIME_VIEWS, Predictor
from audiocnn.labels import CLASS_NAMES
from audiocnn.samples import list_samples

METRICS = DEFAULT_CHECKPOINT.parent / "metrics.json"


@pytest.fixture(scope="module")
def predictor(shipped_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(shipped_checkpoint)


def test_shipped_checkpoint_is_self_describing_and_never_saw_fold_5(shipped_checkpoint: Path) -> None:
    loaded = load_checkpoint(shipped_checkpoint)
    assert loaded.class_names == list(CLASS_NAMES)
    assert loaded.feature_config.sample_rate == 22050
    meta = loaded.metadata
    assert 5 not in meta["train_folds"] and 5 not in meta["val_folds"]
    assert meta["test_folds"] == [5]
    assert meta["epochs_trained"] == meta["epochs"], "the shipped run must have finished its schedule"
    assert shipped_checkpoint.stat().st_size < 50e6


def test_a_plain_training_run_builds_the_shipped_architecture(shipped_checkpoint: Path) -> None:
    from training.recipe import SHIPPED_MODEL_SIZE, TrainConfig, model_config

    shipped = load_checkpoint(shipped_checkpoint).model_config
    assert shipped == model_config(SHIPPED_MODEL_SIZE) == TrainConfig(data_dir="d", out_dir="o").model


def test_bundled_samples_are_two_per_class_from_fold_5() -> None:
    samples = list_samples()
    assert len(samples) == 100
    assert all(s.fold == 5 and s.path.is_file() and s.attribution for s in samples)
    assert sorted({s.label for s in samples}) == sorted(CLASS_NAMES)
    assert sum(s.path.stat().st_size for s in samples) <= 12e6


def test_sample_rows_without_their_audio_file_are_skipped(tmp_path: Path) -> None:
    """A stale index.csv must not offer a clip that would fail to open in the app."""
    (tmp_path / "present.flac").write_bytes(b"audio")
    rows = ["file,label,target,fold,attribution", "present.flac,dog,0,5,someone", "missing.flac,rooster,1,5,other"]
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    assert [clip.name for clip in list_samples(tmp_path)] == ["present"]
    assert list_samples(tmp_path / "absent") == []


def test_shipped_model_classifies_every_sample_clip(predictor: Predictor) -> None:
    samples = list_samples()
    predictions = predictor.predict_batch([predictor.load(s.path) for s in samples])
    for prediction in predictions:
        assert np.isfinite(prediction.probabilities).all()
        assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    correct = sum(p.top_label == s.label for p, s in zip(predictions, samples, strict=True))
    # Held-out clips: the model reaches ~80-90% on fold 5, so 60% here would signal a broken model.
    assert correct / len(samples) >= 0.6


def test_metrics_file_is_consistent() -> None:
    metrics = json.loads(METRICS.read_text())
    confusion = np.asarray(metrics["confusion"])
    assert metrics["class_names"] == list(CLASS_NAMES)
    assert confusion.shape == (50, 50) and confusion.sum() == metrics["num_clips"] == 400
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    for index, name in enumerate(CLASS_NAMES):
        row = confusion[index]
        assert metrics["per_class"][name] == pytest.approx(row[index] / row.sum())
    assert metrics["history"], "the training curves belong in the metrics file"
    assert metrics["views"] == TEST_TIME_VIEWS, "the stored accuracy must be measured the way the app predicts"


@pytest.mark.slow
def test_stored_accuracy_matches_a_fresh_evaluation(esc50_dir: Path, predictor: Predictor) -> None:
    from training.data import read_metadata, select_folds

    clips = select_folds(read_metadata(esc50_dir), [5])
    predictions = predictor.predict_batch([predictor.load(c.path) for c in clips])
    accuracy = np.mean([p.top_index == c.target for p, c in zip(predictions, clips, strict=True)])
    assert accuracy == pytest.approx(json.loads(METRICS.read_text())["accuracy"], abs=1e-9)
