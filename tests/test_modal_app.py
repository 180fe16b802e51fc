"""The Modal app definition, exercised without a network: objects, delegation, run layout."""

from __future__ import annotations

from pathlib import Path

import modal
import pytest

import training.modal_app as modal_app
from audiocnn.features import FeatureConfig
from training.augment import AugmentConfig
from training.recipe import TrainConfig, model_config


class FakeVolume:
    def __init__(self) -> None:
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1


def test_app_objects():
    assert isinstance(modal_app.app, modal.App) and modal_app.app.name == "audiocnn-training"
    assert isinstance(modal_app.image, modal.Image)
    assert isinstance(modal_app.volume, modal.Volume)
    assert isinstance(modal_app.train_remote, modal.Function)
    assert callable(modal_app.modal_main.info.raw_f)


@pytest.mark.filterwarnings("ignore:The train_remote function is executing locally")
def test_remote_function_delegates_to_the_shared_loop(monkeypatch):
    """``train_remote`` runs ``training.loop.train`` on the image's data, commits the volume every epoch."""
    calls = []
    volume = FakeVolume()

    def fake_train(config, resume=False, on_epoch_end=None):
        calls.append((config, resume))
        for epoch in (1, 2, 3):
            on_epoch_end({"epoch": epoch})
        return Path(config.out_dir) / "best.pt"

    monkeypatch.setattr(modal_app, "train", fake_train)
    monkeypatch.setattr(modal_app, "volume", volume)
    config = TrainConfig(data_dir="/my/laptop/esc50", out_dir="/runs/x/fold5", epochs=3)
    assert modal_app.train_remote.local(config, resume=True) == "/runs/x/fold5/best.pt"
    [(sent, resume)] = calls
    assert resume and sent.data_dir == modal_app.REMOTE_DATA and sent.cache_dir == "/runs/cache"
    assert sent.out_dir == "/runs/x/fold5" and sent.epochs == 3 and sent.model == config.model
    assert volume.commits >= 3  # one per epoch at least, so a timed-out run can be resumed


class FakeRemote:
    def __init__(self) -> None:
        self.configs: list[TrainConfig] = []
        self.kwargs: dict = {}

    def map(self, configs, kwargs):
        self.configs, self.kwargs = list(configs), kwargs
        return [f"{c.out_dir}/best.pt" for c in self.configs]


def run_entrypoint(monkeypatch, **options) -> FakeRemote:
    remote = FakeRemote()
    monkeypatch.setattr(modal_app, "train_remote", remote)
    modal_app.modal_main.info.raw_f(**options)
    return remote


def test_single_run_layout(monkeypatch, capsys):
    remote = run_entrypoint(monkeypatch, epochs=7, model_size="small", run_name="try1", val_fold=4)
    (config,) = remote.configs
    assert config.out_dir == "/runs/try1/fold5" and config.epochs == 7
    assert config.train_folds == (1, 2, 3) and config.val_folds == (4,) and config.test_folds == (5,)
    assert config.model == model_config("small")
    assert remote.kwargs == {"resume": False}
    assert "audiocnn-runs: /try1/fold5/best.pt" in capsys.readouterr().out


def test_recipe_options_reach_the_remote_run(monkeypatch):
    (config,) = run_entrypoint(monkeypatch, ema_decay=0.999, freq_shift=4, hop_length=256).configs
    assert config.ema_decay == 0.999 and config.augment.max_freq_shift == 4
    assert config.features.hop_length == 256 and config.augment.time_mask_width == 64
    (plain,) = run_entrypoint(monkeypatch).configs
    assert plain.ema_decay == 0.0 and plain.augment == AugmentConfig()
    assert plain.features == FeatureConfig()
    remote = FakeRemote()
    monkeypatch.setattr(modal_app, "train_remote", remote)
    with pytest.raises(ValueError, match="ema_decay must be at least 0 and below 1"):
        modal_app.modal_main.info.raw_f(ema_decay=1.0)
    assert remote.configs == [], "refused before any GPU job is started"


def test_cross_validation_trains_every_fold(monkeypatch):
    remote = run_entrypoint(monkeypatch, cv=True, resume=True)
    assert [c.test_folds for c in remote.configs] == [(1,), (2,), (3,), (4,), (5,)]
    for config in remote.configs:
        assert set(config.train_folds) == {1, 2, 3, 4, 5} - set(config.test_folds)
        assert config.out_dir == f"/runs/default/fold{config.test_folds[0]}"
    assert remote.kwargs == {"resume": True}


def test_validation_fold_cannot_be_a_test_fold(monkeypatch):
    with pytest.raises(ValueError, match="also a test fold"):
        run_entrypoint(monkeypatch, cv=True, val_fold=2)


def test_fine_tuning_starts_from_a_checkpoint_on_the_volume(monkeypatch):
    (single,) = run_entrypoint(monkeypatch, init_from="base/fold5/best.pt", epochs=5).configs
    assert single.init_from == "/runs/base/fold5/best.pt" and single.describe()["starts_from_checkpoint"]
    (printed,) = run_entrypoint(monkeypatch, init_from="/base/fold5/best.pt").configs  # as the runs print it
    assert printed.init_from == "/runs/base/fold5/best.pt"
    folds = run_entrypoint(monkeypatch, cv=True, init_from="cv-base/fold{fold}/best.pt").configs
    assert [c.init_from for c in folds] == [f"/runs/cv-base/fold{k}/best.pt" for k in range(1, 6)]
    assert all(c.init_from is None for c in run_entrypoint(monkeypatch).configs)
    with pytest.raises(ValueError, match=r"needs \{fold\}"):
        run_entrypoint(monkeypatch, cv=True, init_from="base/fold5/best.pt")
