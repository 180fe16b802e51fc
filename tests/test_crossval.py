"""Cross-validation driver: each fold held out once, partial results recorded honestly."""

from __future__ import annotations

import json
from pathlib import Path

from training.crossval import FOLDS, fold_config, main
from training.loop import TrainConfig


def test_each_fold_is_held_out_from_its_own_training_set(tmp_path: Path) -> None:
    base = TrainConfig(data_dir="d", out_dir="o", val_folds=(2,), epochs=7)
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
    assert document["cv"] == {"folds": {}, "mean": None, "std": None, "complete": False}
