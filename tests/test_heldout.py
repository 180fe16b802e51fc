"""Held-out clips a fresh clone can play: the bundled misclassified clips, their attribution, a local ESC-50."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocnn.audio import load_audio
from audiocnn.heldout import (
    DEFAULT_ESC50_DIR,
    ESC50_ENV,
    HELD_OUT_DIR,
    bundled_clips,
    esc50_setting_problem,
    find_clip,
    local_esc50_dir,
)
from audiocnn.labels import CLASS_NAMES
from ui.resources import METRICS_PATH

MAX_BUNDLE_BYTES = 3_000_000


def shipped_records() -> list[dict]:
    return json.loads(METRICS_PATH.read_text(encoding="utf-8"))["held_out_clips"]["clips"]


def test_every_misclassified_held_out_clip_plays_on_a_fresh_clone(monkeypatch):
    monkeypatch.setenv(ESC50_ENV, "")
    monkeypatch.setattr("audiocnn.heldout.DEFAULT_ESC50_DIR", Path("/nonexistent"))
    bundled = {clip.name: clip.path for clip in bundled_clips()}
    wrong = [r for r in shipped_records() if r["top"][0][0] != r["target"]]
    assert len(wrong) == 65  # 83.75 % of 400
    assert all(find_clip(r["clip"], bundled, local_esc50_dir()) is not None for r in wrong)


def test_the_bundle_is_small_attributed_and_in_the_samples_format():
    files = sorted(HELD_OUT_DIR.glob("*.ogg"))
    assert 0 < sum(path.stat().st_size for path in files) < MAX_BUNDLE_BYTES
    with (HELD_OUT_DIR / "index.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["file"] for row in rows) == [path.name for path in files]
    attribution = (HELD_OUT_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "non-commercial use only" in attribution
    for row in rows:
        assert row["attribution"] and f"`{row['file']}` ({row['label']}): {row['attribution']}" in attribution
        assert CLASS_NAMES[int(row["target"])] == row["label"] and row["fold"] == "5"
        assert int(row["file"].removesuffix(".ogg").rsplit("-", 1)[1]) == int(row["target"])  # ESC-50 naming


def test_a_bundled_ogg_decodes_like_its_five_second_original():
    path = next(HELD_OUT_DIR.glob("*.ogg"))
    assert sf.info(path).format == "OGG" and sf.info(path).subtype == "VORBIS"
    waveform = load_audio(path, 22050)
    assert waveform.shape == (110250,) and np.isfinite(waveform).all() and np.abs(waveform).max() > 0.01


def test_a_local_copy_is_found_by_setting_or_default_folder(tmp_path, monkeypatch):
    copy = tmp_path / "esc50"
    (copy / "audio").mkdir(parents=True)
    (copy / "audio" / "5-9032-A-0.flac").write_bytes(b"")
    monkeypatch.setenv(ESC50_ENV, str(copy))
    assert local_esc50_dir() == copy and esc50_setting_problem() is None
    assert find_clip("5-9032-A-0", {}, local_esc50_dir()) == copy / "audio" / "5-9032-A-0.flac"
    assert find_clip("5-9032-A-0", {"5-9032-A-0": Path("bundled.ogg")}, copy) == Path("bundled.ogg")  # bundled wins
    assert find_clip("5-0000-A-0", {}, copy) is None
    monkeypatch.setenv(ESC50_ENV, str(tmp_path / "nowhere"))
    assert local_esc50_dir() is None and "has no audio/ folder" in esc50_setting_problem()
    monkeypatch.delenv(ESC50_ENV)
    monkeypatch.setattr("audiocnn.heldout.DEFAULT_ESC50_DIR", copy)
    assert local_esc50_dir() == copy


def test_the_default_folder_is_where_the_download_command_writes():
    readme = (DEFAULT_ESC50_DIR.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "python -m training.data download data/esc50" in readme
    assert DEFAULT_ESC50_DIR.relative_to(DEFAULT_ESC50_DIR.parent.parent) == Path("data/esc50")


def test_with_the_shared_copy_every_cell_plays(esc50_dir: Path, monkeypatch):
    monkeypatch.setenv(ESC50_ENV, str(esc50_dir))
    bundled = {clip.name: clip.path for clip in bundled_clips()}
    assert all(find_clip(r["clip"], bundled, local_esc50_dir()) is not None for r in shipped_records())


@pytest.mark.slow
def test_the_records_match_a_fresh_evaluation_of_the_originals(esc50_dir: Path):
    """The records describe the shipped model (a few clips; the whole fold is the evaluation's job)."""
    from audiocnn.inference import Predictor

    predictor = Predictor.from_checkpoint()
    records = shipped_records()[::80]
    waveforms = [predictor.load(find_clip(r["clip"], None, esc50_dir)) for r in records]
    for record, prediction in zip(records, predictor.predict_batch(waveforms)):
        assert [i for i, _ in record["top"]] == [int(i) for i in prediction.order[:5]]
        assert record["top"][0][1] == pytest.approx(prediction.probabilities[prediction.top_index], abs=1e-3)
