"""ESC-50 on disk as the library reads it: the metadata table, fold selection, class order.

Evaluation (``audiocnn.evaluation``, used by ``training.evaluate`` and by the dashboard's
"compute the held-out evaluation") and training read the dataset through these functions,
so both see the same clips, folds and class order.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

FOLDS = (1, 2, 3, 4, 5)
"""ESC-50's predefined folds: clips of one source recording never straddle two."""
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class DatasetError(RuntimeError):
    """The data folder does not have the ESC-50 layout or misses clips."""


@dataclass(frozen=True)
class Clip:
    path: Path
    fold: int
    target: int
    category: str


def read_metadata(data_dir: str | Path) -> list[Clip]:
    """Every clip listed in ``meta/esc50.csv``, resolved to its file whatever its extension."""
    data_dir = Path(data_dir)
    meta = data_dir / "meta" / "esc50.csv"
    audio_dir = data_dir / "audio"
    if not meta.is_file() or not audio_dir.is_dir():
        raise DatasetError(f"{data_dir} is not an ESC-50 folder (expected meta/esc50.csv and audio/).")
    by_stem = {p.stem: p for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
    clips, missing = [], []
    with meta.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), 2):
            try:
                stem = Path(row["filename"]).stem
                fold, target, category = int(row["fold"]), int(row["target"]), row["category"]
            except (KeyError, TypeError, ValueError) as error:
                raise DatasetError(f"{meta} line {line} is malformed (needs filename, fold, target, category): "
                                   f"{error!r}") from error  # fmt: skip
            if stem not in by_stem:
                missing.append(row["filename"])
                continue
            clips.append(Clip(by_stem[stem], fold, target, category))
    if missing:
        raise DatasetError(f"{len(missing)} clips listed in {meta} are missing from {audio_dir}, e.g. {missing[0]}")
    return clips


def class_names_from_metadata(clips: list[Clip]) -> list[str]:
    """Class names in target order, as the dataset defines them."""
    names: dict[int, str] = {}
    for clip in clips:
        if names.setdefault(clip.target, clip.category) != clip.category:
            raise DatasetError(f"target {clip.target} is both {names[clip.target]!r} and {clip.category!r}")
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"targets must be 0..{len(names) - 1} without gaps, got {sorted(names)}")
    return [names[i] for i in range(len(names))]


def select_folds(clips: list[Clip], folds: list[int] | tuple[int, ...]) -> list[Clip]:
    wanted = set(folds)
    if not wanted:
        raise DatasetError("no folds selected")
    unknown = wanted - {clip.fold for clip in clips}
    if unknown:
        raise DatasetError(f"folds {sorted(unknown)} do not exist in this dataset")
    return [clip for clip in clips if clip.fold in wanted]
