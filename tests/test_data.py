"""ESC-50 on disk: metadata, folds, extension resolution, the feature cache, the archive."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from audiocnn.features import FeatureConfig
from audiocnn.labels import CLASS_NAMES
from training import data
from training.data import (
    DatasetError,
    cached_logmels,
    class_names_from_metadata,
    read_metadata,
    select_folds,
    unpack_archive,
)

SMALL_FEATURES = FeatureConfig(clip_seconds=0.5, n_mels=32)  # cheap to compute, still the real code path


def copy_of(dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "esc50"))


def zip_dataset(dataset: Path, archive: Path, top: str = "ESC-50-master/") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{top}README.md", "ESC-50\n")
        zf.writestr(f"{top}LICENSE", "CC BY-NC 3.0\n")
        for path in sorted(dataset.rglob("*")):
            if path.is_file():
                zf.write(path, top + path.relative_to(dataset).as_posix())
    return archive


def test_metadata_resolves_extensions(tiny_esc50):
    clips = read_metadata(tiny_esc50)
    assert len(clips) == 250
    assert {c.path.suffix for c in clips if c.fold == 5} == {".flac"}  # listed as .wav in the csv
    assert {c.path.suffix for c in clips if c.fold != 5} == {".ogg"}
    assert all(c.path.is_file() for c in clips)
    assert class_names_from_metadata(clips) == list(CLASS_NAMES)


def test_fold_selection(tiny_esc50):
    clips = read_metadata(tiny_esc50)
    fold5 = select_folds(clips, [5])
    assert len(fold5) == 50 and {c.fold for c in fold5} == {5}
    assert sorted(c.target for c in fold5) == list(range(50))
    assert {c.fold for c in select_folds(clips, (1, 3))} == {1, 3}
    with pytest.raises(DatasetError, match=r"folds \[6\] do not exist"):
        select_folds(clips, [5, 6])
    with pytest.raises(DatasetError, match="no folds selected"):
        select_folds(clips, [])


def test_missing_clip_is_reported(tiny_esc50, tmp_path):
    dataset = copy_of(tiny_esc50, tmp_path)
    (dataset / "audio" / "3-007-A-0.ogg").unlink()
    with pytest.raises(DatasetError, match=r"1 clips .* missing .* 3-007-A-0\.wav"):
        read_metadata(dataset)


def test_not_an_esc50_folder(tmp_path):
    with pytest.raises(DatasetError, match="not an ESC-50 folder"):
        read_metadata(tmp_path)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("filename,fold,target\n1-000-A-0.wav,1,0\n", "malformed"),
        ("filename,fold,target,category\n1-000-A-0.wav,one,0,dog\n", "line 2 is malformed"),
        ("filename,fold,target,category\n1-000-A-0.wav,1,0,dog\n2-000-A-0.wav,2,0,cat\n", "both 'dog' and 'cat'"),
        ("filename,fold,target,category\n1-000-A-0.wav,1,0,dog\n2-000-A-0.wav,2,2,pig\n", "without gaps"),
    ],
    ids=["missing-column", "bad-number", "two-names", "gap"],
)
def test_malformed_metadata(tiny_esc50, tmp_path, csv, message):
    dataset = copy_of(tiny_esc50, tmp_path)
    (dataset / "meta" / "esc50.csv").write_text(csv)
    with pytest.raises(DatasetError, match=message):
        class_names_from_metadata(read_metadata(dataset))


def test_feature_cache_hit_returns_the_identical_tensor(tiny_esc50, tmp_path, monkeypatch):
    clips = select_folds(read_metadata(tiny_esc50), [2])
    first = cached_logmels(clips, SMALL_FEATURES, tmp_path / "cache")
    assert first.shape == (50, 1, 32, SMALL_FEATURES.num_frames)
    assert len(list((tmp_path / "cache").glob("logmels-*.pt"))) == 1

    def recompute(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data, "compute_logmels", recompute)
    assert torch.equal(cached_logmels(clips, SMALL_FEATURES, tmp_path / "cache"), first)
    with pytest.raises(AssertionError, match="cache was not used"):  # other settings: another cache entry
        cached_logmels(clips, FeatureConfig(clip_seconds=0.5, n_mels=40), tmp_path / "cache")
    with pytest.raises(AssertionError, match="cache was not used"):  # other clips: another cache entry
        cached_logmels(clips[:10], SMALL_FEATURES, tmp_path / "cache")


def test_an_unreadable_cache_entry_is_recomputed_once(tiny_esc50, tmp_path, monkeypatch):
    clips = select_folds(read_metadata(tiny_esc50), [3])[:8]
    first = cached_logmels(clips, SMALL_FEATURES, tmp_path / "cache")
    (entry,) = (tmp_path / "cache").glob("logmels-*.pt")
    entry.write_bytes(entry.read_bytes()[:500])  # a run killed mid-copy, a full disk
    with pytest.warns(UserWarning, match=re.escape(f"feature cache {entry} is unreadable")):
        assert torch.equal(cached_logmels(clips, SMALL_FEATURES, tmp_path / "cache"), first)

    def recompute(*args, **kwargs):
        raise AssertionError("the repaired entry was not used")

    monkeypatch.setattr(data, "compute_logmels", recompute)
    assert torch.equal(cached_logmels(clips, SMALL_FEATURES, tmp_path / "cache"), first)


def test_each_cache_write_has_its_own_temp_file_and_leaves_none_behind(tiny_esc50, tmp_path, monkeypatch):
    """Concurrent runs sharing a cache folder must never write into one temp file, nor leave theirs there."""
    clips = select_folds(read_metadata(tiny_esc50), [3])[:4]
    written = []

    def save_until_the_disk_is_full(features, path):
        written.append(Path(path))
        Path(path).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    for _ in range(2):
        with pytest.raises(OSError, match="No space left"):
            cached_logmels(clips, SMALL_FEATURES, tmp_path / "cache")
    assert len(set(written)) == 2 and {path.parent for path in written} == {tmp_path / "cache"}
    assert list((tmp_path / "cache").iterdir()) == []


def test_uncached_features_equal_cached(tiny_esc50, tmp_path):
    clips = select_folds(read_metadata(tiny_esc50), [5])[:8]
    assert torch.equal(cached_logmels(clips, SMALL_FEATURES, None), cached_logmels(clips, SMALL_FEATURES, tmp_path))


def test_unpack_archive(tiny_esc50, tmp_path):
    archive = zip_dataset(tiny_esc50, tmp_path / "master.zip")
    target = tmp_path / "data"
    assert unpack_archive(archive, target) == target
    assert (target / "LICENSE").is_file() and (target / "meta" / "esc50.csv").is_file()
    assert len(read_metadata(target)) == 250
    (target / "audio" / "stale.wav").write_bytes(b"old")  # a second unpack replaces, not merges
    unpack_archive(archive, target)
    assert not (target / "audio" / "stale.wav").exists()


def test_unpack_refuses_unsafe_or_wrong_archives(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ESC-50-master/meta/esc50.csv", "filename,fold,target,category\n")
        zf.writestr("../escaped.txt", "outside")
    with pytest.raises(DatasetError, match="outside the target"):
        unpack_archive(evil, tmp_path / "data")
    assert not (tmp_path / "escaped.txt").exists()
    empty = tmp_path / "other.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("something/readme.txt", "hi")
    with pytest.raises(DatasetError, match=r"does not contain meta/esc50\.csv"):
        unpack_archive(empty, tmp_path / "data")


def test_download_command_with_a_local_archive(tiny_esc50, tmp_path, capsys):
    archive = zip_dataset(tiny_esc50, tmp_path / "esc50.zip")
    assert data.main(["download", str(tmp_path / "esc50"), "--archive", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "ESC-50 ready in" in out and "(250 clips)" in out
    not_zip = tmp_path / "broken.zip"
    not_zip.write_bytes(b"not a zip")
    assert data.main(["download", str(tmp_path / "x"), "--archive", str(not_zip)]) == 1
    assert capsys.readouterr().err.startswith("error: ")
