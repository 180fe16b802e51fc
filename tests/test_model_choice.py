"""Which checkpoint is served: launch options, the runs found and their labels, the bounded model cache."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tone

from audiocnn.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from audiocnn.inference import Predictor
from ui import model_choice
from ui.model_cache import ModelCache, model_key


def test_flag_wins_over_environment_which_wins_over_the_shipped_model(tmp_path):
    env = {model_choice.CHECKPOINT_ENV: str(tmp_path / "env.pt"), model_choice.RUNS_ENV: str(tmp_path / "r")}
    flagged = model_choice.launch_options(["--checkpoint", "flag.pt", "--data-dir", str(tmp_path)], env)
    assert flagged.checkpoint == (Path.cwd() / "flag.pt").resolve() and flagged.origin == "--checkpoint"
    assert flagged.runs_dir == tmp_path / "r" and flagged.data_dir == tmp_path
    from_env = model_choice.launch_options(["-q", "tests/x.py"], env)  # another program's arguments are ignored
    assert from_env.checkpoint == tmp_path / "env.pt" and from_env.origin == "$AUDIOCNN_CHECKPOINT"
    shipped = model_choice.launch_options(["--check", "x.pt"], {})  # no abbreviations
    assert shipped.checkpoint == DEFAULT_CHECKPOINT and shipped.runs_dir == model_choice.DEFAULT_RUNS_DIR
    assert shipped.data_dir is None


def test_runs_are_found_newest_first_without_feature_caches(trained_run):
    runs = trained_run.parent.parent
    assert list(runs.glob("cache/logmels-*.pt"))  # the run's feature cache lies in the runs folder
    found = model_choice.find_checkpoints(runs)
    assert set(found) == {trained_run, trained_run.with_name("last.pt")}
    os.utime(trained_run, (1, 1))  # best.pt becomes the oldest
    try:
        assert model_choice.find_checkpoints(runs)[0].name == "last.pt"
    finally:
        os.utime(trained_run)
    assert model_choice.find_checkpoints(runs / "absent") == []


def test_a_run_is_labelled_by_its_training_record(trained_run, tmp_path):
    run = tmp_path / "run" / "best.pt"
    run.parent.mkdir()
    shutil.copy(trained_run, run)
    summary = model_choice.summarize(run)
    assert summary.architecture == "2-stage CNN 8–16 ch" and summary.train_folds == (1, 2, 3)
    record = torch.load(run, weights_only=True)["metadata"]
    epochs = "2 epochs" if record["epochs_trained"] == 2 else "epoch 1 of 2"  # best.pt: the best validation epoch
    assert summary.epochs == epochs and summary.label().endswith(f"folds 1-3 · {epochs} · held-out accuracy unknown")
    document = {"accuracy": 0.25, "folds": [5], "class_names": torch.load(run, weights_only=True)["class_names"],
                "training": {"seed": record["seed"], "train_folds": record["train_folds"]}}  # fmt: skip
    model_choice.metrics_path(run).write_text(json.dumps(document))
    assert model_choice.summarize(run).held_out == "fold 5: 25.0%"
    document["training"]["seed"] = record["seed"] + 1  # the metrics of another run of the same recipe
    model_choice.metrics_path(run).write_text(json.dumps(document))
    assert model_choice.summarize(run).held_out == ""


def test_shipped_model_label_and_an_unservable_file(tmp_path):
    shipped = model_choice.summarize(DEFAULT_CHECKPOINT)
    assert shipped.label().startswith("shipped model · 4-stage CNN 64–512 ch, full-res stem · folds 1-4 · 10 epochs")
    assert "fold 5: 83.8%" in shipped.label()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    assert "corrupt" in model_choice.summarize(junk).error
    assert model_choice.summarize(junk).label().endswith("cannot be served")


def test_the_cache_holds_at_most_its_capacity_least_recently_used_out(tiny_checkpoint, four_stage_checkpoint, tmp_path):
    loads = []

    def loader(path: Path) -> Predictor:
        loads.append(path.name)
        return Predictor.from_checkpoint(path)

    third = tmp_path / "third.pt"
    shutil.copy(tiny_checkpoint, third)
    cache = ModelCache(capacity=2, loader=loader)
    first = cache.get(tiny_checkpoint)
    assert cache.get(tiny_checkpoint) is first  # loaded once
    cache.get(four_stage_checkpoint)
    cache.get(tiny_checkpoint)  # now the most recent: four_stage goes first
    cache.get(third)
    assert [p.name for p in cache.loaded()] == ["tiny.pt", "third.pt"]
    assert loads == ["tiny.pt", "four_stage.pt", "third.pt"]
    assert model_key(cache.get(third)) == model_key(first)  # same bytes, same cached work


def test_a_file_replaced_in_place_is_reloaded_under_a_new_key(tiny_checkpoint, four_stage_checkpoint, tmp_path):
    path = tmp_path / "best.pt"
    shutil.copy(tiny_checkpoint, path)
    cache = ModelCache()
    before = cache.get(path)
    shutil.copy(four_stage_checkpoint, path)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    after = cache.get(path)
    assert after is not before and len(after.model_config.widths) == 4
    assert model_key(after) != model_key(before) and len(cache.loaded()) == 1


def test_a_bad_file_is_refused_and_not_cached(tmp_path):
    cache = ModelCache()
    with pytest.raises(CheckpointError, match="not found"):
        cache.get(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not found"):
        cache.get(tmp_path)  # a folder
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02junk")
    with pytest.raises(CheckpointError):
        cache.get(bad)
    assert cache.loaded() == []


def test_threads_serving_different_models_get_their_own_results(trained_run, four_stage_checkpoint):
    """The resources layer directly: eight callers on two models at once, each gets its model's answer."""
    cache = ModelCache()
    clip = tone(5.0, 22050, 700.0)[:, 0]
    expected = {path: Predictor.from_checkpoint(path).predict(clip).probabilities
                for path in (trained_run, four_stage_checkpoint)}  # fmt: skip
    assert not np.allclose(*expected.values())
    barrier = threading.Barrier(8)
    results: dict[int, tuple[Path, np.ndarray]] = {}

    def serve(i: int) -> None:
        path = (trained_run, four_stage_checkpoint)[i % 2]
        barrier.wait()
        results[i] = (path, cache.get(path).predict(clip).probabilities)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(cache.loaded()) == 2
    for path, probabilities in results.values():
        np.testing.assert_allclose(probabilities, expected[path], atol=1e-6)
