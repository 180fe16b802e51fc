"""Checkpoints: faithful round trip, refusal of pickled code, clear errors for broken files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL

from audiocnn.checkpoint import (
    FORMAT,
    CheckpointError,
    checkpoint_payload,
    load_checkpoint,
    read_payload,
    save_checkpoint,
)
from audiocnn.features import FeatureConfig
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import AudioCNN

METADATA = {"history": [{"epoch": 1, "train_loss": 1.5}], "seed": 3, "recipe": {"lr": 0.002, "folds": [1, 2]}}


class RunsShell:
    """Unpickling this object would run a shell command (the classic malicious-checkpoint payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def model() -> AudioCNN:
    torch.manual_seed(0)
    return AudioCNN(TINY_MODEL).eval()


def payload(model: AudioCNN) -> dict:
    return checkpoint_payload(model, FeatureConfig(), list(CLASS_NAMES), METADATA)


def write(path: Path, data: object) -> Path:
    torch.save(data, path)
    return path


def test_round_trip_gives_the_same_model(model, tmp_path):
    features = FeatureConfig(n_mels=64, f_max=8000.0)
    path = save_checkpoint(tmp_path / "deep" / "model.pt", model, features, CLASS_NAMES, METADATA)
    assert not list(path.parent.glob("*.tmp"))  # atomic write leaves nothing behind
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.model_config == TINY_MODEL
    assert loaded.feature_config == features
    assert loaded.class_names == list(CLASS_NAMES)
    assert loaded.metadata == METADATA
    assert loaded.path == path
    x = torch.randn(2, 1, 64, 100)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_metadata_is_plain_data_loadable_with_weights_only(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model, FeatureConfig(), CLASS_NAMES, METADATA)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["metadata"] == METADATA


@pytest.mark.parametrize("where", ["top level", "inside metadata"])
def test_pickled_code_is_refused_and_never_runs(model, tmp_path, where):
    marker = tmp_path / "pwned"
    data = payload(model)
    if where == "top level":
        data["extra"] = RunsShell(marker)
    else:
        data["metadata"]["callback"] = RunsShell(marker)
    path = write(tmp_path / "evil.pt", data)
    with pytest.raises(CheckpointError, match="Refused to load") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value) and "system" in str(error.value)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the unsafe loader really would run it: the test can fail
    assert marker.exists()


def test_function_reference_is_refused(model, tmp_path):
    path = write(tmp_path / "function.pt", {**payload(model), "hook": os.getcwd})
    with pytest.raises(CheckpointError, match=r"Refused to load .* references \S*getcwd"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as error:
        load_checkpoint(tmp_path / "nothing.pt")
    assert "nothing.pt" in str(error.value)


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_file(model, tmp_path, keep):
    good = save_checkpoint(tmp_path / "good.pt", model, FeatureConfig(), CLASS_NAMES)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as error:
        load_checkpoint(bad)
    assert str(bad) in str(error.value)


@pytest.mark.parametrize("content", [b"these are not weights\n", bytes(range(256)) * 40, b"PK\x03\x04broken"])
def test_not_a_checkpoint_at_all(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or truncated") as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(format="someone-else"), "not an audiocnn checkpoint"),
        (lambda p: p.pop("format"), "not an audiocnn checkpoint"),
        (lambda p: p.update(format_version=99), "format version 99"),
        (lambda p: p.update(class_names=p["class_names"][:-1]), "49 class names for a model with 50 outputs"),
        (lambda p: p["model_config"].update(num_classes=10), "10 outputs"),
        (lambda p: p["model_config"].update(architecture="vit-b16"), "unknown architecture 'vit-b16'"),
        (lambda p: p["feature_config"].update(version=99), "feature version 99"),
        (lambda p: p["feature_config"].update(sample_rate=1000), "sample_rate 1000"),
        (lambda p: p["feature_config"].update(window="hamming"), "unsupported feature config keys"),
        (lambda p: p["model_config"].update(widths=[8, 32]), "weights do not match"),
        (lambda p: p["model_config"].update(widths=["wide", 8]), "malformed entry"),
        (lambda p: p.pop("state_dict"), "malformed entry"),
    ],
    ids=["wrong-marker", "no-marker", "format-version", "class-count", "num-classes", "architecture",
         "feature-version", "feature-rate", "feature-key", "weights-shape", "bad-width", "no-weights"],
)  # fmt: skip
def test_incompatible_checkpoints_are_explained(model, tmp_path, change, message):
    data = payload(model)
    change(data)
    path = write(tmp_path / "broken.pt", data)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_payload_refuses_wrong_class_count(model):
    with pytest.raises(ValueError, match="49 class names"):
        checkpoint_payload(model, FeatureConfig(), CLASS_NAMES[:-1])


def test_read_payload_gives_the_raw_dictionary(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model, FeatureConfig(), CLASS_NAMES, METADATA)
    raw = read_payload(path)
    assert raw["class_names"] == list(CLASS_NAMES) and raw["model_config"] == TINY_MODEL.to_dict()
