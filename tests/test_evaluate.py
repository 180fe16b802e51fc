"""``python -m training.evaluate``: metrics schema, consistency with serving, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_MODEL

from audiocnn.checkpoint import save_checkpoint
from audiocnn.features import FeatureConfig
from audiocnn.inference import TEST_TIME_VIEWS, Predictor
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import AudioCNN
from training.data import compute_logmels, read_metadata, select_folds
from training.evaluate import CLIPS_KEY, TOP_K, main

TRAINING_METADATA = {
    "history": [{"epoch": 1, "train_loss": 3.9, "train_accuracy": 0.02, "lr": 1e-3, "samples_per_second": 50.0}],
    "epochs": 1, "seed": 7, "train_folds": [1, 2, 3, 4], "selection": "final epoch of a fixed schedule",
    "training_seconds": 12.5, "code_version": "audiocnn test", "device": "cpu (test)", "recipe": {"lr": 1e-3},
}  # fmt: skip


def run_json(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint carrying the metadata a training run writes."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("eval") / "trained.pt"
    return save_checkpoint(path, AudioCNN(TINY_MODEL).eval(), FeatureConfig(), list(CLASS_NAMES), TRAINING_METADATA)


def test_json_schema_and_counts(capsys, tiny_checkpoint, tiny_esc50, tmp_path):
    output = tmp_path / "sub" / "metrics.json"
    result = run_json(capsys, "--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_esc50),
                      "--folds", "5", "--output", str(output))  # fmt: skip
    assert set(result) == {"checkpoint", "folds", "views", "num_clips", "accuracy", "per_class", "confusion",
                           "class_names", "history", "training", "held_out_clips"}  # fmt: skip
    assert result["views"] == TEST_TIME_VIEWS
    assert result["checkpoint"] == str(tiny_checkpoint)
    assert result["folds"] == [5]
    assert result["num_clips"] == 50
    assert result["class_names"] == list(CLASS_NAMES)
    confusion = np.asarray(result["confusion"])
    assert confusion.shape == (50, 50)
    assert confusion.sum() == 50
    assert (confusion.sum(axis=1) == 1).all()  # one fold-5 clip per class in the tiny dataset
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert list(result["per_class"]) == list(CLASS_NAMES)
    assert [result["per_class"][n] for n in CLASS_NAMES] == pytest.approx(np.diag(confusion).tolist())
    assert result["history"] == [] and result["training"] == {"note": "test"}  # the tiny checkpoint's only record
    assert json.loads(output.read_text()) == result


def test_output_keeps_the_metrics_files_other_keys(capsys, tiny_checkpoint, tiny_esc50, tmp_path):
    """Re-evaluating into the shipped metrics file must not drop the tables other commands stored there."""
    output = tmp_path / "metrics.json"
    output.write_text(json.dumps({"robustness": {"rows": [1]}, "accuracy": 0.01}))
    result = run_json(capsys, "--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_esc50),
                      "--folds", "5", "--output", str(output))  # fmt: skip
    assert json.loads(output.read_text()) == {**result, "robustness": {"rows": [1]}}


@pytest.mark.parametrize("views", [1, 3])
def test_predictions_match_the_training_feature_path(capsys, tiny_checkpoint, tiny_esc50, views):
    """Serving-path evaluation agrees with the model run on training.data's log-mels (averaged over
    the time-rolled views), in any batch size."""
    args = ("--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_esc50), "--folds", "5", "4")
    result = run_json(capsys, *args, "--batch-size", "7", "--views", str(views))  # batches unlike compute_logmels'
    clips = select_folds(read_metadata(tiny_esc50), [5, 4])
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    features = compute_logmels(clips, predictor.feature_config)
    frames = features.shape[-1]
    with torch.no_grad():
        rolled = [torch.roll(features, k * frames // views, dims=-1) for k in range(views)]
        predicted = sum(predictor.model(x).softmax(1) for x in rolled).argmax(1).numpy()
    expected = np.zeros((50, 50), dtype=int)
    np.add.at(expected, ([c.target for c in clips], predicted), 1)
    assert result["confusion"] == expected.tolist()
    assert result["num_clips"] == 100 and result["folds"] == [5, 4] and result["views"] == views


def test_training_metadata_is_reported_and_train_folds_warned(capsys, trained_checkpoint, tiny_esc50):
    assert main(["--checkpoint", str(trained_checkpoint), "--data-dir", str(tiny_esc50), "--folds", "1", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["history"] == TRAINING_METADATA["history"]
    assert result["training"] == {k: TRAINING_METADATA[k] for k in
                                  ("epochs", "seed", "train_folds", "selection", "training_seconds",
                                   "code_version", "device")}  # fmt: skip
    assert "trained on fold(s) [1]" in captured.err


def test_text_report(capsys, trained_checkpoint, tiny_esc50):
    assert main(["--checkpoint", str(trained_checkpoint), "--data-dir", str(tiny_esc50), "--folds", "5"]) == 0
    text = capsys.readouterr().out
    assert "accuracy: " in text and "clips: 50" in text
    assert "per-class accuracy" in text and "Sea waves" in text
    matrix_rows = [line for line in text.splitlines() if line[:3].strip().isdigit() and len(line) > 150]
    assert len(matrix_rows) == 50
    assert "warning" not in capsys.readouterr().err  # fold 5 was held out


def test_refuses_mismatched_class_names(capsys, tiny_esc50, tmp_path):
    path = save_checkpoint(tmp_path / "other.pt", AudioCNN(TINY_MODEL), FeatureConfig(),
                           list(reversed(CLASS_NAMES)))  # fmt: skip
    assert main(["--checkpoint", str(path), "--data-dir", str(tiny_esc50)]) == 2
    assert "class names do not match" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda ckpt, data, tmp: ["--checkpoint", ckpt, "--data-dir", str(tmp)], "is not an ESC-50 folder"),
        (lambda ckpt, data, tmp: ["--checkpoint", ckpt, "--data-dir", data, "--folds", "9"], "folds [9] do not exist"),
        (lambda ckpt, data, tmp: ["--checkpoint", str(tmp / "no.pt"), "--data-dir", data], "Checkpoint not found"),
        (lambda ckpt, data, tmp: ["--checkpoint", ckpt, "--data-dir", data, "--views", "0"], "at least 1, not 0"),
    ],
    ids=["bad-data-dir", "bad-fold", "missing-checkpoint", "no-views"],
)
def test_clear_errors(capsys, tiny_checkpoint, tiny_esc50, tmp_path, make_args, message):
    assert main(make_args(str(tiny_checkpoint), str(tiny_esc50), tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_module_entry_point(tiny_checkpoint, tiny_esc50):
    """The documented command works as a subprocess: JSON on stdout, exit 0; a bad fold exits non-zero."""
    base = [sys.executable, "-m", "training.evaluate", "--checkpoint", str(tiny_checkpoint),
            "--data-dir", str(tiny_esc50)]  # fmt: skip
    done = subprocess.run([*base, "--folds", "5", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["num_clips"] == 50
    failed = subprocess.run([*base, "--folds", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and "folds [0]" in failed.stderr


def test_default_is_the_shipped_checkpoint(capsys, shipped_checkpoint, tiny_esc50):
    result = run_json(capsys, "--data-dir", str(tiny_esc50), "--folds", "5")
    assert result["checkpoint"] == "assets/model.pt"  # project-relative, not this machine's path
    assert shipped_checkpoint == ROOT / result["checkpoint"]
    assert result["num_clips"] == 50 and result["history"]  # the shipped model carries its training curves
    assert result["training"]["test_folds"] == [5]


def test_per_clip_records_agree_with_the_model_and_the_matrix(capsys, tiny_checkpoint, tiny_esc50):
    result = run_json(capsys, "--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_esc50), "--folds", "5",
                      "--batch-size", "7")  # fmt: skip
    document = result[CLIPS_KEY]
    assert document["folds"] == [5] and document["top_k"] == TOP_K and document["views"] == TEST_TIME_VIEWS
    records = document["clips"]
    clips = select_folds(read_metadata(tiny_esc50), [5])
    assert [r["clip"] for r in records] == [c.path.stem for c in clips]  # file names, without the extension
    assert [r["target"] for r in records] == [c.target for c in clips]
    predictor = Predictor.from_checkpoint(tiny_checkpoint)
    expected = predictor.predict_batch([predictor.load(c.path) for c in clips])
    for record, prediction in zip(records, expected):
        assert [i for i, _ in record["top"]] == [int(i) for i in prediction.order[:TOP_K]]  # most likely first
        assert [p for _, p in record["top"]] == pytest.approx(prediction.probabilities[prediction.order[:TOP_K]],
                                                              abs=1e-4)  # fmt: skip
    confusion = np.zeros((50, 50), dtype=int)
    for record in records:
        confusion[record["target"], record["top"][0][0]] += 1
    assert result["confusion"] == confusion.tolist()


def test_update_clips_sets_only_its_key(capsys, tiny_checkpoint, tiny_esc50, tmp_path):
    metrics = tmp_path / "metrics.json"
    others = {"accuracy": 0.855, "cv": {"mean": 0.9}, "confusion": [[1]]}
    metrics.write_text(json.dumps(others))
    args = ["--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_esc50), "--folds", "5"]
    assert main([*args, "--update-clips", str(metrics)]) == 0
    updated = json.loads(metrics.read_text())
    assert {k: v for k, v in updated.items() if k != CLIPS_KEY} == others  # every other key as it was
    assert len(updated[CLIPS_KEY]["clips"]) == 50
    capsys.readouterr()
    metrics.write_text("[1, 2]")
    assert main([*args, "--update-clips", str(metrics)]) == 2
    assert "does not hold a JSON object" in capsys.readouterr().err
