"""ESC-50 on disk: metadata, fold selection, cached log-mels, and the download command.

The cache holds each clip's log-mel computed once by the very code the app serves
with (``audiocnn.audio.load_audio`` + ``audiocnn.features.LogMel``), so epochs cost no
decoding. Its key hashes the feature config and the clips' names and sizes, not the
code: a changed setting or dataset gets a fresh entry, but after changing the decoding
or log-mel code itself, clear the cache folder or training drifts from serving.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import urllib.request
import warnings
import zipfile
from pathlib import Path

import torch
from tqdm import tqdm

from audiocnn.audio import fit_to_length, load_audio
from audiocnn.checkpoint import save_atomically
from audiocnn.esc50 import (  # noqa: F401 (re-exported: training reads the dataset through these)
    AUDIO_EXTENSIONS,
    FOLDS,
    Clip,
    DatasetError,
    class_names_from_metadata,
    read_metadata,
    select_folds,
)  # fmt: skip
from audiocnn.features import FeatureConfig, LogMel

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"


def _cache_key(config: FeatureConfig, clips: list[Clip]) -> str:
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for clip in clips:
        digest.update(f"{clip.path.name}:{clip.path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def compute_logmels(clips: list[Clip], config: FeatureConfig, batch_size: int = 32) -> torch.Tensor:
    """Log-mels ``(N, 1, n_mels, frames)`` through the serving code path."""
    frontend = LogMel(config)
    outputs = []
    for start in tqdm(range(0, len(clips), batch_size), desc="log-mels", unit="batch", leave=False):
        batch = [
            torch.from_numpy(fit_to_length(load_audio(c.path, config.sample_rate), config.clip_samples))
            for c in clips[start : start + batch_size]
        ]
        with torch.no_grad():
            outputs.append(frontend(torch.stack(batch)))
    return torch.cat(outputs)


def cached_logmels(clips: list[Clip], config: FeatureConfig, cache_dir: str | Path | None) -> torch.Tensor:
    """``compute_logmels`` with an on-disk cache (plain tensors, loaded with weights_only).

    The folder may be shared by concurrent runs, so each writes its own temp file and renames
    it into place: readers see a whole file or none. An unreadable entry is recomputed and
    replaced rather than failing every later run.
    """
    if cache_dir is None:
        return compute_logmels(clips, config)
    cache = Path(cache_dir) / f"logmels-{_cache_key(config, clips)}.pt"
    if cache.is_file():
        try:
            return torch.load(cache, weights_only=True)
        except Exception as error:  # damaged bytes make torch.load raise almost anything
            warnings.warn(f"feature cache {cache} is unreadable ({type(error).__name__}); recomputing it",
                          stacklevel=2)  # fmt: skip
    features = compute_logmels(clips, config)
    save_atomically(features, cache)
    return features


def unpack_archive(archive: str | Path, data_dir: str | Path) -> Path:
    """Unpack the official ESC-50 zip (one top folder holding meta/ and audio/) into data_dir."""
    data_dir = Path(data_dir)
    with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory() as tmp:
        root_dir = Path(tmp).resolve()
        for member in zf.infolist():
            if not (root_dir / member.filename).resolve().is_relative_to(root_dir):
                raise DatasetError(f"refusing archive member outside the target: {member.filename}")
        zf.extractall(tmp)
        metas = list(Path(tmp).glob("**/meta/esc50.csv"))
        if not metas:
            raise DatasetError(f"{archive} does not contain meta/esc50.csv")
        root = metas[0].parent.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        for name in ("meta", "audio"):
            if (data_dir / name).exists():
                shutil.rmtree(data_dir / name)
            shutil.move(str(root / name), str(data_dir / name))
        if (root / "LICENSE").is_file():
            shutil.copy(root / "LICENSE", data_dir / "LICENSE")
    read_metadata(data_dir)
    return data_dir


def download(data_dir: str | Path, url: str = ESC50_URL) -> Path:
    """Fetch the official ESC-50 archive (about 600 MB) and unpack it into data_dir."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "esc50.zip"
        with urllib.request.urlopen(url) as response, archive.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc="ESC-50") as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        return unpack_archive(archive, data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="download and unpack the official ESC-50 archive")
    get.add_argument("data_dir", type=Path)
    get.add_argument("--url", default=ESC50_URL)
    get.add_argument("--archive", type=Path, help="unpack this local zip instead of downloading")
    args = parser.parse_args(argv)
    try:
        path = unpack_archive(args.archive, args.data_dir) if args.archive else download(args.data_dir, args.url)
    except (DatasetError, OSError, zipfile.BadZipFile) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"ESC-50 ready in {path} ({len(read_metadata(path))} clips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
