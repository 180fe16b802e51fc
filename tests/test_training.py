"""The shared training loop on a tiny dataset: outputs, resume, fold hygiene, the CLI's options."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_FEATURES, TINY_MODEL, tiny_train_config

from audiocnn.checkpoint import CheckpointError, load_checkpoint
from audiocnn.features import LEVEL_INVARIANT_VERSION, FeatureConfig
from audiocnn.labels import CLASS_NAMES
from audiocnn.model import ModelConfig
from training.augment import AugmentConfig
from training.data import DatasetError
from training.loop import device_spans, train
from training.recipe import TrainConfig, model_config
from training.train import main, parse_args

FEATURES = TINY_FEATURES


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C between epochs."""


def tiny_config(dataset: Path, out: Path, cache: Path, **changes) -> TrainConfig:
    return tiny_train_config(dataset, out, cache, **{"epochs": 2, **changes})


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="module")
def finished_run(tiny_esc50, cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    epochs = []
    best = train(tiny_config(tiny_esc50, out, cache), on_epoch_end=lambda record: epochs.append(record["epoch"]))
    assert best == out / "best.pt" and epochs == [1, 2]
    return out


def test_run_writes_checkpoints_logs_and_history(finished_run):
    loaded = load_checkpoint(finished_run / "best.pt")
    assert loaded.model_config == TINY_MODEL and loaded.feature_config == FEATURES
    assert loaded.class_names == list(CLASS_NAMES)
    meta = loaded.metadata
    assert meta["selection"] == "best validation accuracy" and meta["selected_epoch"] in (1, 2)
    assert meta["train_folds"] == [1, 2, 3] and meta["val_folds"] == [4] and meta["test_folds"] == [5]
    assert meta["recipe"]["model"] == TINY_MODEL.to_dict() and meta["epochs"] == 2
    assert len(meta["history"]) == meta["selected_epoch"]
    history = json.loads((finished_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for record in history:
        assert {"train_loss", "train_accuracy", "lr", "samples_per_second", "val_loss", "val_accuracy"} <= set(record)
        assert 0 <= record["val_accuracy"] <= 1 and record["train_loss"] > 0
        assert record["device"] == meta["device"] and record["device"].startswith("cpu (")
    last = torch.load(finished_run / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and last["history"] == history
    assert load_checkpoint(finished_run / "last.pt").metadata["epochs_trained"] == 2  # also a servable checkpoint
    assert load_checkpoint(finished_run / "last.pt").metadata["devices"] == f"{meta['device']}: epochs 1-2"
    events = list((finished_run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 200


def test_tensorboard_scalars(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(finished_run / "tensorboard"))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "val/accuracy", "lr"} <= tags
    assert [event.step for event in accumulator.Scalars("train/loss")] == [1, 2]


def test_resuming_a_finished_run_changes_nothing(finished_run, tmp_path, tiny_esc50, cache):
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    before = (out / "best.pt").read_bytes(), (out / "last.pt").read_bytes()

    def no_epochs(record):
        raise AssertionError(f"epoch {record['epoch']} ran again")

    assert train(tiny_config(tiny_esc50, out, cache), resume=True, on_epoch_end=no_epochs) == out / "best.pt"
    assert ((out / "best.pt").read_bytes(), (out / "last.pt").read_bytes()) == before


def test_interrupted_run_resumes_where_it_stopped(finished_run, tmp_path, tiny_esc50, cache):
    """Stopping after epoch 1 and resuming gives exactly the weights of the uninterrupted run."""
    config = tiny_config(tiny_esc50, tmp_path / "run", cache)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, on_epoch_end=stop_after_first)
    interrupted = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert interrupted["epoch"] == 1
    assert interrupted["optimizer"]["param_groups"][0]["fused"] is True  # the single-pass AdamW kernel
    resumed_epochs = []
    train(config, resume=True, on_epoch_end=lambda record: resumed_epochs.append(record["epoch"]))
    assert resumed_epochs == [2]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    resumed = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state_dict"]
    uninterrupted = torch.load(finished_run / "last.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=1e-6, msg=name)


def test_command_line_reports_a_resume_with_other_settings(finished_run, tmp_path, tiny_esc50, cache, capsys):
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    argv = ["--data-dir", str(tiny_esc50), "--out", str(out), "--cache-dir", str(cache), "--resume", "--epochs", "5"]
    assert main(argv) == 2
    assert "error: cannot resume" in capsys.readouterr().err


def test_resume_from_a_served_checkpoint_says_what_is_missing(finished_run, tmp_path, tiny_esc50, cache):
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    shutil.copy(out / "best.pt", out / "last.pt")  # weights and metadata only: no optimizer, schedule or RNG state
    with pytest.raises(CheckpointError, match=r"holds no training state to resume from .*optimizer"):
        train(tiny_config(tiny_esc50, out, cache), resume=True)


def test_resume_refuses_other_settings(finished_run, tmp_path, tiny_esc50, cache):
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    with pytest.raises(ValueError, match=r"different settings \(epochs 2 -> 5\)"):
        train(tiny_config(tiny_esc50, out, cache, epochs=5), resume=True)
    moved = tiny_config(tiny_esc50, out, tmp_path / "other-cache", device="cpu", data_dir=str(tiny_esc50))
    assert train(moved, resume=True) == out / "best.pt"  # paths may change between sessions (Modal, laptops)


def test_run_saved_before_a_model_option_existed_still_resumes(finished_run, tmp_path, tiny_esc50, cache):
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    state = torch.load(out / "last.pt", weights_only=True)
    del state["metadata"]["recipe"]["model"]["pooling"]  # as written by the first release
    del state["metadata"]["recipe"]["ema_decay"]
    del state["metadata"]["recipe"]["augment"]["max_freq_shift"]
    torch.save(state, out / "last.pt")
    assert train(tiny_config(tiny_esc50, out, cache), resume=True) == out / "best.pt"
    with pytest.raises(ValueError, match="different settings"):
        train(tiny_config(tiny_esc50, out, cache, model=replace(TINY_MODEL, pooling="time-max")), resume=True)


def test_weight_averaging_serves_the_moving_average(tiny_esc50, tmp_path, cache):
    """With ``ema_decay`` the served weights (and batch-norm statistics) are the average, updated every
    step; validation reports both, so one run measures what averaging buys."""
    config = tiny_config(tiny_esc50, tmp_path / "run", cache, val_folds=(), ema_decay=0.9)
    best = train(config)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    served = load_checkpoint(best).model.state_dict()
    averaged = {name.removeprefix("module."): value
                for name, value in last["averaged_model"].items() if name != "n_averaged"}  # fmt: skip
    assert last["averaged_model"]["n_averaged"].item() == 2 * (150 // 32)  # every step of both epochs
    assert served.keys() == averaged.keys() == last["state_dict"].keys()
    for name in served:
        torch.testing.assert_close(served[name], averaged[name], rtol=0, atol=0, msg=name)
    differs = [name for name in served if served[name].is_floating_point()
               and not torch.allclose(served[name], last["state_dict"][name])]  # fmt: skip
    assert "head.weight" in differs and any(name.endswith("running_mean") for name in differs)

    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert "raw_val_accuracy" not in history[0]
    validated = train(replace(config, out_dir=str(tmp_path / "validated"), val_folds=(4,)))
    record = load_checkpoint(validated).metadata["history"][0]
    assert 0 <= record["raw_val_accuracy"] <= 1 and 0 <= record["val_accuracy"] <= 1


def test_a_tiny_decay_serves_the_last_weights(tiny_esc50, tmp_path, cache):
    """Decay near 0 makes the average follow the weights step by step: the wiring, not the maths, is tested."""
    best = train(tiny_config(tiny_esc50, tmp_path / "run", cache, val_folds=(), ema_decay=1e-9))
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state_dict"]
    for name, value in load_checkpoint(best).model.state_dict().items():
        torch.testing.assert_close(value, last[name], rtol=1e-6, atol=1e-6, msg=name)


def test_averaged_run_resumes_where_it_stopped(tiny_esc50, tmp_path, cache):
    config = tiny_config(tiny_esc50, tmp_path / "whole", cache, val_folds=(), ema_decay=0.9)
    train(config)
    interrupted = replace(config, out_dir=str(tmp_path / "interrupted"))

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(interrupted, on_epoch_end=stop_after_first)
    train(interrupted, resume=True)
    resumed = load_checkpoint(tmp_path / "interrupted" / "best.pt").model.state_dict()
    for name, value in load_checkpoint(tmp_path / "whole" / "best.pt").model.state_dict().items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match=r"different settings \(ema_decay 0.9 -> 0.0\)"):
        train(replace(interrupted, ema_decay=0.0), resume=True)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_out_of_range_is_refused(tiny_esc50, tmp_path, cache, decay):
    with pytest.raises(ValueError, match="ema_decay must be at least 0 and below 1"):
        train(tiny_config(tiny_esc50, tmp_path / "run", cache, ema_decay=decay))


def test_resuming_from_a_damaged_last_pt_names_the_file(finished_run, tmp_path, tiny_esc50, cache, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes((finished_run / "last.pt").read_bytes()[:1000])  # cut short by a crash
    config = tiny_config(tiny_esc50, out, cache)
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt or truncated"):
        train(config, resume=True)
    monkeypatch.setattr("training.train.parse_args", lambda argv: (config, True))
    assert main([]) == 2
    assert capsys.readouterr().err.startswith(f"error: Checkpoint {out / 'last.pt'} is corrupt")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"epochs": 0}, "epochs must be at least 1, not 0"),
        ({"batch_size": 0}, "batch_size must be at least 1, not 0"),
        ({"lr": 0.0}, "lr must be above 0, not 0.0"),
        ({"lr": float("nan")}, "lr must be above 0, not nan"),
        ({"weight_decay": -0.01}, "weight_decay must be at least 0"),
    ],
    ids=["epochs", "batch-size", "lr", "lr-nan", "weight-decay"],
)
def test_settings_that_cannot_train_are_refused_on_construction(setting, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data_dir="d", out_dir="o", **setting)


def test_without_resume_a_run_starts_over(finished_run, tmp_path, tiny_esc50, cache):
    out = Path(shutil.copytree(finished_run, tmp_path / "run"))
    epochs = []
    train(tiny_config(tiny_esc50, out, cache, epochs=1), on_epoch_end=lambda record: epochs.append(record["epoch"]))
    assert epochs == [1]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        ({"train_folds": (1, 2, 5), "val_folds": ()}, r"folds \[5\] are used for training"),
        ({"train_folds": (1, 2, 4)}, r"folds \[4\] are used for training"),
        ({"val_folds": (5,)}, "validation folds must not be test folds"),
    ],
    ids=["train-test", "train-val", "val-test"],
)
def test_overlapping_folds_are_refused(tiny_esc50, tmp_path, cache, folds, message):
    with pytest.raises(ValueError, match=message):  # on construction: before any feature is computed
        tiny_config(tiny_esc50, tmp_path / "run", cache, **folds)
    assert not (tmp_path / "run").exists()


def test_class_count_must_match_the_dataset(tiny_esc50, tmp_path, cache):
    with pytest.raises(DatasetError, match="dataset has 50 classes, model config 10"):
        train(tiny_config(tiny_esc50, tmp_path / "run", cache, model=replace(TINY_MODEL, num_classes=10)))


def test_command_line_options(capsys):
    config, resume = parse_args(["--data-dir", "d", "--out", "o"])
    assert not resume and config.cache_dir == str(Path("o") / "cache") and config.epochs == TrainConfig.epochs == 300
    assert config.model == TrainConfig(data_dir="", out_dir="").model == model_config("fullres")
    assert not config.model.stem_pool, "a plain run retrains the shipped architecture"
    assert config.train_folds == (1, 2, 3, 4) and config.val_folds == () and config.test_folds == (5,)
    argv = ["--data-dir", "d", "--out", "o", "--no-cache", "--resume", "--epochs", "3", "--model-size", "small",
            "--val-folds", "4", "--train-folds", "1", "2", "3"]  # fmt: skip
    config, resume = parse_args(argv)
    assert resume and config.cache_dir is None and config.epochs == 3
    assert config.model == model_config("small") and config.val_folds == (4,) and config.train_folds == (1, 2, 3)
    assert config.ema_decay == 0.0
    assert config.augment == AugmentConfig()
    config, _ = parse_args(["--data-dir", "d", "--out", "o", "--ema-decay", "0.999", "--freq-shift", "4"])
    assert config.ema_decay == 0.999 and config.augment == AugmentConfig(max_freq_shift=4)
    assert config.features == FeatureConfig()
    config, _ = parse_args(["--data-dir", "d", "--out", "o", "--init-from", "runs/base/best.pt"])
    assert config.init_from == "runs/base/best.pt" and config.describe()["starts_from_checkpoint"] is True
    config, _ = parse_args(["--data-dir", "d", "--out", "o", "--hop-length", "256"])
    assert config.features == FeatureConfig(hop_length=256) and config.augment.time_mask_width == 64
    for option, value, message in (("--freq-shift", "-2", "max_freq_shift counts mel bands and cannot be negative"),
                                   ("--ema-decay", "1", "ema_decay must be at least 0 and below 1"),
                                   ("--batch-size", "0", "batch_size must be at least 1"),
                                   ("--test-folds", "4", "folds [4] are used for training"),
                                   ("--hop-length", "2048", "hop_length 2048")):  # fmt: skip
        with pytest.raises(SystemExit):
            parse_args(["--data-dir", "d", "--out", "o", option, value])
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown model size"):
        model_config("huge")
    config, _ = parse_args(["--data-dir", "d", "--out", "o", "--model-size", "resnet18"])
    assert config.model == ModelConfig(**{**model_config("fullres").to_dict(), "stem_pool": True})


def test_device_spans_say_which_machine_trained_which_epochs():
    history = [{"epoch": 1}, *({"epoch": e, "device": "cpu (x86_64)"} for e in (2, 3, 4, 9, 10)),
               *({"epoch": e, "device": "cuda (NVIDIA H100)"} for e in (5, 6, 7, 8))]  # fmt: skip
    history.sort(key=lambda record: record["epoch"])
    assert device_spans(history) == "cpu (x86_64): epochs 2-4, 9-10; cuda (NVIDIA H100): epochs 5-8"
    assert device_spans([{"epoch": 1, "device": "cpu (arm64)"}]) == "cpu (arm64): epochs 1"
    assert device_spans([{"epoch": 1}]) == ""


def test_fine_tuning_starts_from_a_checkpoint_and_records_it(finished_run, tmp_path, tiny_esc50, cache):
    start = finished_run / "best.pt"
    config = tiny_config(tiny_esc50, tmp_path / "tuned", cache, epochs=1, lr=1e-9, val_folds=(), init_from=str(start))
    tuned = load_checkpoint(train(config))
    before = load_checkpoint(start).model.state_dict()
    for name, value in tuned.model.state_dict().items():
        if name.endswith("weight"):  # an lr of 1e-9 leaves the starting weights (batch-norm statistics do move)
            torch.testing.assert_close(value, before[name], rtol=0, atol=1e-6, msg=name)
    assert tuned.metadata["initialised_from"]["path"] == str(start)
    assert tuned.metadata["initialised_from"]["train_folds"] == [1, 2, 3]
    assert tuned.metadata["recipe"]["starts_from_checkpoint"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_folds": (1, 2, 4), "val_folds": (), "test_folds": (3,)}, r"trained on fold\(s\) \[3\]"),
        ({"val_folds": (), "model": replace(TINY_MODEL, pooling="time-max")}, "another architecture"),
        ({"val_folds": (), "features": replace(FEATURES, n_mels=64)}, "other features"),
    ],
    ids=["leak", "architecture", "spectrogram"],
)
def test_fine_tuning_refuses_a_start_that_leaks_or_does_not_fit(
    finished_run, tmp_path, tiny_esc50, cache, changes, message
):
    config = tiny_config(tiny_esc50, tmp_path / "tuned", cache, init_from=str(finished_run / "best.pt"), **changes)
    with pytest.raises(CheckpointError, match=message):
        train(config)
    assert not (tmp_path / "tuned" / "last.pt").exists()


def test_fine_tuning_may_move_to_the_level_invariant_front_end_with_recording_damage(
    finished_run, tmp_path, tiny_esc50, cache
):
    """The migration path of a version-1 model: same spectrogram, peak-referenced dB, noise/band/room on."""
    augment = AugmentConfig(noise_prob=1.0, band_prob=0.5, reverb_prob=0.5)
    features = replace(FEATURES, version=LEVEL_INVARIANT_VERSION)
    config = tiny_config(tiny_esc50, tmp_path / "v2", cache, epochs=1, val_folds=(), augment=augment,
                         init_from=str(finished_run / "best.pt"), features=features)  # fmt: skip
    tuned = load_checkpoint(train(config))
    assert tuned.feature_config.version == LEVEL_INVARIANT_VERSION
    assert tuned.metadata["initialised_from"]["feature_version"] == 1
    assert tuned.metadata["recipe"]["augment"]["noise_prob"] == 1.0
    assert np.isfinite(tuned.metadata["history"][-1]["train_loss"])
