"""The recipe options, declared once (``training.options``), reach every entry point the same way."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from audiocnn.features import FeatureConfig
from training import crossval
from training.augment import AugmentConfig
from training.options import RECIPE_OPTIONS
from training.recipe import RECIPE_KEYS, TrainConfig, model_config
from training.train import parse_args

ROOT = Path(__file__).resolve().parent.parent

CHANGED = {"epochs": 7, "batch_size": 16, "lr": 1e-3, "weight_decay": 0.01, "model_size": "small", "seed": 3,
           "ema_decay": 0.99, "freq_shift": 3, "hop_length": 256, "feature_version": 2, "noise_prob": 0.5,
           "band_prob": 0.25, "reverb_prob": 0.3, "init_from": "base/fold{fold}/best.pt"}  # fmt: skip
"""A value other than the default for every recipe option: an option added without one fails the first test."""


def expected_recipe(init_from: str | None) -> dict:
    """What ``CHANGED`` means, spelled out by hand rather than through ``training.options``."""
    config = TrainConfig(data_dir="", out_dir="", epochs=7, batch_size=16, lr=1e-3, weight_decay=0.01, seed=3,
                         model=model_config("small"), ema_decay=0.99,
                         features=FeatureConfig(hop_length=256, version=2),
                         augment=AugmentConfig(max_freq_shift=3, time_mask_width=64, noise_prob=0.5, band_prob=0.25,
                                               reverb_prob=0.3), init_from=init_from)  # fmt: skip
    return recipe_of(config)


def recipe_of(config: TrainConfig) -> dict:
    described = config.describe()
    return {key: described[key] for key in RECIPE_KEYS if key not in ("train_folds", "val_folds", "test_folds")}


def flags(values: dict) -> list[str]:
    return [arg for name, value in values.items() for arg in ("--" + name.replace("_", "-"), str(value))]


def test_every_option_is_covered_here() -> None:
    assert [option.name for option in RECIPE_OPTIONS] == list(CHANGED)
    assert all(CHANGED[option.name] != option.default for option in RECIPE_OPTIONS)


def test_local_command_line(capsys) -> None:
    config, _ = parse_args(["--data-dir", "d", "--out", "o", *flags({**CHANGED, "init_from": "runs/base/best.pt"})])
    assert recipe_of(config) == expected_recipe("runs/base/best.pt")
    default, _ = parse_args(["--data-dir", "d", "--out", "o"])
    assert default == TrainConfig(data_dir="d", out_dir="o", cache_dir=str(Path("o") / "cache"))


def test_cross_validation_command_line(monkeypatch, tmp_path) -> None:
    seen = []
    monkeypatch.setattr(crossval, "run", lambda base, out, folds: seen.append((base, folds)))
    assert crossval.main(["run", "--data-dir", "d", "--out", str(tmp_path), "--folds", "2", *flags(CHANGED)]) == 0
    [(base, folds)] = seen
    assert folds == [2]
    assert recipe_of(crossval.fold_config(base, 2, tmp_path)) == expected_recipe("base/fold2/best.pt")
    assert crossval.main(["run", "--data-dir", "d", "--out", str(tmp_path)]) == 0
    assert seen[-1][0] == TrainConfig(data_dir="d", out_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_cross_validation_needs_each_folds_own_start(capsys, tmp_path) -> None:
    with pytest.raises(SystemExit):
        crossval.main(["run", "--data-dir", "d", "--out", str(tmp_path), "--init-from", "base/best.pt"])
    assert "needs {fold}" in capsys.readouterr().err


def test_modal_entrypoint(monkeypatch) -> None:
    modal_app = pytest.importorskip("training.modal_app")
    configs = []

    class Remote:
        def map(self, sent, kwargs):
            configs.extend(sent)
            return []

    monkeypatch.setattr(modal_app, "train_remote", Remote())
    modal_app.modal_main.info.raw_f(**CHANGED)
    [config] = configs
    assert recipe_of(config) == expected_recipe("/runs/base/fold5/best.pt")
    configs.clear()
    modal_app.modal_main.info.raw_f()
    assert recipe_of(configs[0]) == recipe_of(TrainConfig(data_dir="", out_dir=""))


def test_modal_command_line_lists_every_option() -> None:
    """What ``modal run training/train.py --help`` shows: Modal reads the entrypoint's signature."""
    modal_app = pytest.importorskip("training.modal_app")
    parameters = inspect.signature(modal_app.modal_main.info.raw_f).parameters
    for option in RECIPE_OPTIONS:
        assert parameters[option.name].default == option.default
        assert parameters[option.name].annotation is option.type


def test_local_training_needs_no_modal() -> None:
    """``python -m training.train`` runs where Modal cannot be imported (a laptop without it)."""
    code = ("import sys; sys.modules['modal'] = None; import runpy; sys.argv = ['train', '--help']; "
            "runpy.run_module('training.train', run_name='__main__')")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--init-from" in result.stdout and "--ema-decay" in result.stdout
    probe = ("import sys; sys.modules['modal'] = None; import training.train, training.crossval; "
             "print('modal' in sys.modules and sys.modules['modal'] is not None)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_modal_run_finds_the_app_in_training_train() -> None:
    """``modal run training/train.py`` imports the file by path, as Modal's CLI does, and finds the app."""
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('train', 'training/train.py'); "
            "module = importlib.util.module_from_spec(spec); sys.modules['train'] = module; "
            "spec.loader.exec_module(module); import modal; print(isinstance(module.app, modal.App), "
            "module.app.name, callable(module.modal_main.info.raw_f))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "audiocnn-training", "True"]
