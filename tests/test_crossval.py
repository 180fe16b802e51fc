"""Cross-validation driver: each fold held out once, partial results recorded honestly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL

from audiocnn.checkpoint import save_checkpoint
from audiocnn.features import FeatureConfig
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import AudioCNN
from training.augment import AugmentConfig
from training.crossval import FOLDS, CrossValidationError, fold_config, fold_finished, main, summarize
from training.evaluate import EvaluationError
from training.recipe import TrainConfig


def test_each_fold_is_held_out_from_its_own_training_set(tmp_path: Path) -> None:
    base = TrainConfig(data_dir="d", out_dir="o", train_folds=(1,), val_folds=(2,), epochs=7)
    for fold in FOLDS:
        config = fold_config(base, fold, tmp_path)
        assert config.test_folds == (fold,) and config.val_folds == ()
        assert set(config.train_folds) == set(FOLDS) - {fold}
        assert config.out_dir == str(tmp_path / f"fold{fold}") and config.epochs == 7


def test_summary_without_finished_folds_keeps_the_metrics_and_says_incomplete(tiny_esc50, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.5}))
    assert main(["summarize", "--data-dir", str(tiny_esc50), "--out", str(tmp_path / "cv"),
                 "--metrics", str(metrics)]) == 0  # fmt: skip
    document = json.loads(metrics.read_text())
    assert document["accuracy"] == 0.5
    assert document["cv"] == {"folds": {}, "mean": None, "std": None, "complete": False, "recipe": None}


def finished_fold(out: Path, fold: int, recipe: TrainConfig, epochs_trained: int | None = None,
                  class_names: tuple[str, ...] = CLASS_NAMES) -> None:  # fmt: skip
    """A fold folder holding its served checkpoint (only that: folds trained elsewhere arrive so)."""
    run_dir = out / f"fold{fold}"
    run_dir.mkdir(parents=True)
    config = fold_config(recipe, fold, out)
    metadata = {"recipe": config.describe(), "epochs": config.epochs, "epochs_trained": epochs_trained or config.epochs}
    save_checkpoint(run_dir / "best.pt", AudioCNN(recipe.model).eval(), recipe.features, list(class_names), metadata)


def test_summary_scores_each_fold_on_its_own_held_out_clips(tiny_esc50, tmp_path: Path) -> None:
    recipe = TrainConfig(data_dir="d", out_dir="o", epochs=3, model=TINY_MODEL)
    for fold in (2, 4):
        finished_fold(tmp_path / "cv", fold, recipe)
    summary = summarize(tmp_path / "cv", str(tiny_esc50))
    assert set(summary["folds"]) == {"2", "4"} and not summary["complete"]
    assert all(0 <= accuracy <= 1 for accuracy in summary["folds"].values())
    assert summary["mean"] == pytest.approx(np.mean(list(summary["folds"].values())))
    assert summary["recipe"]["epochs"] == 3 and summary["recipe"]["model"] == TINY_MODEL.to_dict()


def test_summary_refuses_folds_of_different_recipes(capsys, tiny_esc50, tmp_path: Path) -> None:
    recipe = TrainConfig(data_dir="d", out_dir="o", epochs=3, model=TINY_MODEL)
    finished_fold(tmp_path / "cv", 1, recipe)
    finished_fold(tmp_path / "cv", 5, replace(recipe, epochs=4))
    with pytest.raises(CrossValidationError, match=r"fold 5 was trained with other settings \(epochs\)"):
        summarize(tmp_path / "cv", str(tiny_esc50))
    assert main(["summarize", "--data-dir", str(tiny_esc50), "--out", str(tmp_path / "cv")]) == 2
    assert capsys.readouterr().err.startswith("error: fold 5")


def test_summary_refuses_a_fold_whose_classes_are_in_another_order(capsys, tiny_esc50, tmp_path: Path) -> None:
    recipe = TrainConfig(data_dir="d", out_dir="o", epochs=3, model=TINY_MODEL)
    finished_fold(tmp_path / "cv", 1, recipe, class_names=(CLASS_NAMES[1], CLASS_NAMES[0], *CLASS_NAMES[2:]))
    with pytest.raises(EvaluationError, match=r"class names do not match the dataset's \(0: model 'rooster'"):
        summarize(tmp_path / "cv", str(tiny_esc50))
    assert main(["summarize", "--data-dir", str(tiny_esc50), "--out", str(tmp_path / "cv")]) == 2
    assert capsys.readouterr().err.startswith("error: the checkpoint's class names")


def test_run_reports_damaged_checkpoints_and_data_without_a_traceback(capsys, tiny_esc50, tmp_path: Path) -> None:
    (tmp_path / "cv" / "fold1").mkdir(parents=True)
    (tmp_path / "cv" / "fold1" / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["run", "--data-dir", str(tiny_esc50), "--out", str(tmp_path / "cv"), "--folds", "1"]) == 2
    assert capsys.readouterr().err.startswith(f"error: Checkpoint {tmp_path / 'cv' / 'fold1' / 'best.pt'} is corrupt")
    assert main(["run", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "cv"), "--folds", "2"]) == 2
    assert "is not an ESC-50 folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--data-dir", str(tiny_esc50), "--out", str(tmp_path / "cv"), "--epochs", "0"])
    assert "epochs must be at least 1, not 0" in capsys.readouterr().err


def test_a_fold_whose_schedule_is_not_done_is_neither_scored_nor_skipped(tiny_esc50, tmp_path: Path) -> None:
    recipe = TrainConfig(data_dir="d", out_dir="o", epochs=3, model=TINY_MODEL)
    finished_fold(tmp_path / "cv", 1, recipe)
    finished_fold(tmp_path / "cv", 2, recipe, epochs_trained=2)
    assert fold_finished(tmp_path / "cv" / "fold1") and not fold_finished(tmp_path / "cv" / "fold2")
    assert not fold_finished(tmp_path / "cv" / "fold3")
    assert set(summarize(tmp_path / "cv", str(tiny_esc50))["folds"]) == {"1"}


def test_run_trains_the_named_model_size(monkeypatch, tmp_path: Path) -> None:
    seen = []
    monkeypatch.setattr("training.crossval.run", lambda base, out, folds: seen.append((base, folds)))
    assert main(["run", "--data-dir", "d", "--out", str(tmp_path), "--folds", "3", "--model-size", "fullres"]) == 0
    ((base, folds),) = seen
    assert folds == [3] and not base.model.stem_pool and base.cache_dir == str(tmp_path / "cache")
    assert base.features == FeatureConfig() and base.augment == AugmentConfig() and base.ema_decay == 0


def test_run_passes_the_recipe_options(monkeypatch, tmp_path: Path) -> None:
    seen = []
    monkeypatch.setattr("training.crossval.run", lambda base, out, folds: seen.append(base))
    argv = ["run", "--data-dir", "d", "--out", str(tmp_path), "--hop-length", "256", "--freq-shift", "3",
            "--ema-decay", "0.99"]  # fmt: skip
    assert main(argv) == 0
    (base,) = seen
    assert base.features.hop_length == 256 and base.augment.time_mask_width == 64
    assert base.augment.max_freq_shift == 3 and base.ema_decay == 0.99
