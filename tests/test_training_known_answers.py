"""Training behaviour with known answers: which epoch is served, that training learns, that the benchmark
runs the loop's own step, what a fine-tuned model records of its ancestry, what the commands print,
and that cross-validation scores every fold on its own held-out clips and resumes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_FEATURES, TINY_MODEL, tiny_train_config

import benchmarks.training_speed as training_speed
import training.loop as loop
import training.train as local_cli
from audiocnn.checkpoint import load_checkpoint
from audiocnn.model import AudioCNN
from training import crossval
from training.augment import AugmentConfig
from training.recipe import TrainConfig

FEATURES = TINY_FEATURES


def tiny_config(dataset: Path, out: Path, cache: Path, **changes) -> TrainConfig:
    return tiny_train_config(dataset, out, cache, **{"epochs": 3, **changes})


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


def weights_by_epoch(out: Path) -> tuple[dict[int, dict[str, torch.Tensor]], Callable[[dict], None]]:
    """An ``on_epoch_end`` that keeps a copy of the weights each epoch ended with (from ``last.pt``)."""
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def keep(record):
        seen[record["epoch"]] = torch.load(out / "last.pt", weights_only=True)["state_dict"]

    return seen, keep


@pytest.mark.parametrize(("scores", "selected"), [([0.2, 0.6, 0.4], 2), ([0.5, 0.3, 0.5], 1), ([0.1, 0.2, 0.3], 3)])
def test_the_best_validation_epoch_is_served(tiny_esc50, tmp_path, cache, monkeypatch, scores, selected):
    """A scripted validation sequence: ``best.pt`` holds the weights of the epoch with the highest accuracy
    (the first of equal ones), not the last epoch's."""
    script = iter(scores)
    monkeypatch.setattr(loop, "evaluate_logmels", lambda *args, **kwargs: (1.0, next(script)))
    seen, keep = weights_by_epoch(tmp_path / "run")
    best = load_checkpoint(loop.train(tiny_config(tiny_esc50, tmp_path / "run", cache), on_epoch_end=keep))
    assert best.metadata["selected_epoch"] == selected and len(best.metadata["history"]) == selected
    assert [record["val_accuracy"] for record in best.metadata["history"]] == scores[:selected]
    for name, value in best.model.state_dict().items():
        torch.testing.assert_close(value, seen[selected][name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(value, seen[3][name]) for name, value in best.model.state_dict().items()
               if value.is_floating_point()) or selected == 3  # fmt: skip


def test_without_validation_the_final_epoch_is_served(tiny_esc50, tmp_path, cache):
    seen, keep = weights_by_epoch(tmp_path / "run")
    config = tiny_config(tiny_esc50, tmp_path / "run", cache, val_folds=())
    best = load_checkpoint(loop.train(config, on_epoch_end=keep))
    assert best.metadata["selected_epoch"] == 3 and best.metadata["selection"] == "final epoch of a fixed schedule"
    for name, value in best.model.state_dict().items():
        torch.testing.assert_close(value, seen[3][name], rtol=0, atol=0, msg=name)


def test_training_learns(tiny_esc50, tmp_path, cache):
    """Twenty epochs on the tiny dataset (each class its own tone, three clips per class): validation accuracy
    rises from chance (1/50) to well above it and the training loss falls. A loop that never updates, or
    updates towards the wrong targets, stays at chance. The masks are scaled to the tiny log-mel (32 bands,
    44 frames: the default widths would hide most of it) and mixup is off, so that 80 steps suffice."""
    augment = AugmentConfig(freq_mask_width=4, time_mask_width=6, mixup_prob=0.0)
    config = tiny_config(tiny_esc50, tmp_path / "run", cache, epochs=20, lr=1e-2, augment=augment)
    history = json.loads((loop.train(config).parent / "history.json").read_text())
    first, last = history[0], history[-1]
    assert first["val_accuracy"] <= 0.06  # chance, up to a lucky clip or two
    assert last["val_accuracy"] >= 0.14 and max(h["val_accuracy"] for h in history) >= 0.2  # measured: 0.22, 0.28
    assert last["train_loss"] < first["train_loss"] - 0.3  # measured: 3.98 -> 3.5


def test_the_loop_and_the_benchmark_run_one_train_step(tiny_esc50, tmp_path, cache, monkeypatch):
    """The benchmark measures ``training.loop.train_step`` itself, the function every training step runs."""
    assert training_speed.train_step is loop.train_step
    calls, real = [], loop.train_step

    def counted(*args, **kwargs):
        calls.append(args[2].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", counted)
    loop.train(tiny_config(tiny_esc50, tmp_path / "run", cache, epochs=1))
    assert calls == [32] * (150 // 32)  # every step of the epoch, whole batches
    calls.clear()
    monkeypatch.setattr(training_speed, "train_step", counted)
    x, y = torch.randn(4, 1, 32, 44), torch.arange(4)
    trainer = training_speed.Trainer(TINY_MODEL, iter([(x, y)]), autocast=False, channels_last=False, seed=0)
    trainer.step(timed=True)
    assert calls == [4] and len(trainer.step_seconds) == 1


def test_steps_lower_the_cross_entropy_on_the_true_classes():
    """With augmentation, smoothing and dropout off, three steps on one batch lower that batch's cross-entropy,
    measured apart from what ``train_step`` returns (train mode: batch-norm uses the batch's statistics)."""
    torch.manual_seed(0)
    model = AudioCNN(replace(TINY_MODEL, dropout=0.0)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 1, 32, 44), torch.arange(8)
    plain = AugmentConfig(max_shift_fraction=0, gain_db=0, freq_masks=0, time_masks=0, mixup_prob=0)
    generator = torch.Generator().manual_seed(0)

    def cross_entropy() -> float:
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(x), y).item()

    before = cross_entropy()
    returned = [loop.train_step(model, optimizer, x, y, plain, 0.0, generator, autocast=False)[0].item()
                for _ in range(3)]  # fmt: skip
    assert returned[0] == pytest.approx(before, rel=1e-5)  # the loss of the step's own forward pass
    assert cross_entropy() < before - 0.05


def test_fine_tuned_models_carry_their_lineage(tiny_esc50, tmp_path, cache):
    """Base run, then two fine-tuning stages: each stage lists every earlier one, oldest first, with its
    recipe and its per-epoch history as that stage stored it."""
    base = loop.train(tiny_config(tiny_esc50, tmp_path / "base", cache, epochs=2, val_folds=()))
    first = loop.train(tiny_config(tiny_esc50, tmp_path / "first", cache, epochs=1, val_folds=(), lr=1e-4,
                                   init_from=str(base)))  # fmt: skip
    second = loop.train(tiny_config(tiny_esc50, tmp_path / "second", cache, epochs=1, val_folds=(), lr=1e-5,
                                    init_from=str(first)))  # fmt: skip
    base_meta, first_meta, second_meta = (load_checkpoint(p).metadata for p in (base, first, second))
    assert "lineage" not in base_meta
    assert first_meta["lineage"] == [
        {"source": str(base), "recipe": base_meta["recipe"], "history": base_meta["history"], "epochs": 2}
    ]
    assert second_meta["lineage"] == [
        first_meta["lineage"][0],
        {"source": str(first), "recipe": first_meta["recipe"], "history": first_meta["history"], "epochs": 1},
    ]
    assert second_meta["lineage"][1]["recipe"]["lr"] == 1e-4 and second_meta["recipe"]["lr"] == 1e-5
    last = torch.load(tmp_path / "second" / "last.pt", weights_only=True)
    assert last["metadata"]["lineage"] == second_meta["lineage"]  # a resumed stage keeps it


def test_local_training_prints_how_to_open_the_model(tiny_esc50, tmp_path, cache, monkeypatch, capsys):
    config = tiny_config(tiny_esc50, tmp_path / "run", cache, epochs=1)
    monkeypatch.setattr(local_cli, "parse_args", lambda argv: (config, False))
    assert local_cli.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    best = tmp_path / "run" / "best.pt"
    assert lines[-1] == f"open it in the app: streamlit run app.py -- --checkpoint {best}"
    assert lines[-2].startswith(f"evaluate it with: python -m training.evaluate --checkpoint {best} ")


def test_modal_training_prints_how_to_fetch_and_open_the_model(monkeypatch, capsys):
    modal_app = pytest.importorskip("training.modal_app")

    class Remote:
        def map(self, configs, kwargs):
            return [f"{c.out_dir}/best.pt" for c in configs]

    monkeypatch.setattr(modal_app, "train_remote", Remote())
    modal_app.modal_main.info.raw_f(run_name="try1")
    assert capsys.readouterr().out.splitlines() == [
        "checkpoint saved on volume audiocnn-runs: /try1/fold5/best.pt",
        "open it in the app:",
        "  modal volume get audiocnn-runs /try1/fold5/best.pt runs/try1/fold5/best.pt",
        "  streamlit run app.py -- --checkpoint runs/try1/fold5/best.pt",
    ]


def test_cross_validation_resumes_each_unfinished_fold(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(crossval, "train", lambda config, resume=False: trained.append((config, resume)))
    monkeypatch.setattr(crossval, "fold_finished", lambda run_dir: run_dir.name == "fold2")
    base = TrainConfig(data_dir="d", out_dir="o", epochs=4, model=TINY_MODEL)
    crossval.run(base, tmp_path, [1, 2, 3])
    assert [(config.test_folds, resume) for config, resume in trained] == [((1,), True), ((3,), True)]
    assert [config.out_dir for config, _ in trained] == [str(tmp_path / "fold1"), str(tmp_path / "fold3")]


def test_cross_validation_scores_each_fold_on_its_own_clips(tiny_esc50, tmp_path, monkeypatch):
    """Every fold's checkpoint is evaluated on exactly the clips of the fold it held out."""
    from test_crossval import finished_fold

    recipe = TrainConfig(data_dir="d", out_dir="o", epochs=3, model=TINY_MODEL)
    for fold in (1, 3, 5):
        finished_fold(tmp_path / "cv", fold, recipe)
    scored = []
    real = crossval.evaluate

    def spy(predictor, clips, *args):
        scored.append((predictor.path.parent.name, sorted({clip.fold for clip in clips}), len(clips)))
        return real(predictor, clips, *args)

    monkeypatch.setattr(crossval, "evaluate", spy)
    summary = crossval.summarize(tmp_path / "cv", str(tiny_esc50))
    assert scored == [("fold1", [1], 50), ("fold3", [3], 50), ("fold5", [5], 50)]
    assert set(summary["folds"]) == {"1", "3", "5"}
