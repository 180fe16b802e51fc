"""The explanation evaluation command on a tiny ESC-50 copy and a tiny model: a stratified sample,
every method's table, the default's choice, and a metrics file updated only under its own key."""

from __future__ import annotations

import json

import pytest

from training import explain_eval
from training.data import read_metadata, select_folds


def test_stratified_sample_interleaves_the_classes(tiny_esc50):
    clips = select_folds(read_metadata(tiny_esc50), [1, 2])
    chosen = explain_eval.stratified(clips, 2)
    assert len(chosen) == 100
    assert [c.target for c in chosen[:50]] == list(range(50)) == [c.target for c in chosen[50:]]
    assert all(c.fold == 1 for c in chosen[:50]) and all(c.fold == 2 for c in chosen[50:])  # first by file name


def spread(mean: float) -> dict:
    return {"mean": mean, "std": 0.0, "median": mean, "q1": mean, "q3": mean}


def areas(most: float, least: float, rand: float) -> dict:
    return {"most_first": spread(most), "least_first": spread(least), "random": spread(rand),
            "gap": spread(least - most), "margin_most_first": spread(rand - most),
            "margin_least_first": spread(least - rand)}  # fmt: skip


def test_the_default_is_the_best_gap_among_methods_beating_random_both_ways():
    table = {
        "wide-but-unfaithful": {"impute": areas(0.1, 0.8, 0.9)},  # the biggest gap, but worse than random kept
        "modest": {"impute": areas(0.7, 0.95, 0.9)},
        "weak": {"impute": areas(0.85, 0.92, 0.9)},
    }
    assert explain_eval.choose_default(table) == "modest"
    assert explain_eval.choose_default({"a": table["wide-but-unfaithful"]}) == "a"  # nothing beats random


def test_the_command_scores_every_method_and_updates_only_its_key(tiny_esc50, tiny_checkpoint, tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.5, "explanations": {"selection": {"kept": True}}}))
    code = explain_eval.main(["--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_esc50), "--folds", "5",
                              "--per-class", "1", "--max-minutes", "1e-9", "--store", "heldout",
                              "--metrics", str(metrics)])  # fmt: skip
    assert code == 0
    document = json.loads(metrics.read_text())
    assert document["accuracy"] == 0.5 and document["explanations"]["selection"] == {"kept": True}
    result = document["explanations"]["heldout"]
    assert result["clips"] == 1 and result["clips_planned"] == 50 and result["held_out"]
    # The tiny model has two stages: no Grad-CAM of layer3 or layer4, every input-level method.
    assert set(result["methods"]) == {"gradcam-stem", "gradcam-layer1", "gradcam-layer2", "integrated-gradients",
                                      "smoothgrad", "occlusion-time", "occlusion-freq", "occlusion-patch"}  # fmt: skip
    for row in result["methods"].values():
        for removal in ("floor", "impute"):
            a = row[removal]
            assert a["gap"]["mean"] == pytest.approx(a["least_first"]["mean"] - a["most_first"]["mean"], abs=2e-4)
        assert 0 <= row["fidelity_in"] <= 1 and row["map_ms_median"] > 0
    assert result["best"]["impute"] in result["methods"]
    out = capsys.readouterr().out
    assert "best gap among methods beating random in both orders" in out and "integrated-gradients" in out
