"""Where a held-out ESC-50 clip can be played from: bundled files first, then a local ESC-50 copy.

A fresh clone bundles the fold-5 sample clips (``assets/samples``, FLAC) and every misclassified
fold-5 clip (``assets/held_out``, OGG Vorbis), so every off-diagonal cell of the confusion matrix
plays without the dataset. With a local copy of ESC-50 every clip plays: the folder named by the
``AUDIOCNN_ESC50`` environment variable, else ``data/esc50`` in the project (the folder
``python -m training.data download data/esc50`` writes).
"""

from __future__ import annotations

import os
from pathlib import Path

from .samples import SAMPLES_DIR, SampleClip, list_samples

ROOT = SAMPLES_DIR.parent.parent
HELD_OUT_DIR = ROOT / "assets" / "held_out"
ESC50_ENV = "AUDIOCNN_ESC50"
DEFAULT_ESC50_DIR = ROOT / "data" / "esc50"
AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3")


def local_esc50_dir() -> Path | None:
    """The local ESC-50 folder (one with ``audio/``), or None: ``$AUDIOCNN_ESC50``, else ``data/esc50``."""
    configured = os.environ.get(ESC50_ENV, "").strip()
    folder = Path(configured).expanduser() if configured else DEFAULT_ESC50_DIR
    return folder if (folder / "audio").is_dir() else None


def esc50_setting_problem() -> str | None:
    """Why ``$AUDIOCNN_ESC50`` is not used, when it is set to a folder without ``audio/``."""
    configured = os.environ.get(ESC50_ENV, "").strip()
    if configured and not (Path(configured).expanduser() / "audio").is_dir():
        return f"{ESC50_ENV}={configured} has no audio/ folder: only the bundled clips play."
    return None


def bundled_clips() -> list[SampleClip]:
    """Bundled held-out clips: the samples, then the misclassified clips not already among them."""
    samples = list_samples(SAMPLES_DIR)
    known = {clip.name for clip in samples}
    return samples + [clip for clip in list_samples(HELD_OUT_DIR) if clip.name not in known]


def find_clip(stem: str, bundled: dict[str, Path] | None = None, esc50: Path | None = None) -> Path | None:
    """The file to play for an ESC-50 clip (its name without extension), or None when none is here.

    ``bundled`` maps names to bundled files (``bundled_clips``); ``esc50`` is the local copy.
    Bundled files win: they are the ones the app was checked with.
    """
    if bundled is not None and stem in bundled:
        return bundled[stem]
    if esc50 is not None:
        for extension in AUDIO_EXTENSIONS:
            path = esc50 / "audio" / f"{stem}{extension}"
            if path.is_file():
                return path
    return None
