"""The bundled ESC-50 sample clips (``assets/samples``): a catalogue the app and tests share."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"


@dataclass(frozen=True)
class SampleClip:
    path: Path
    label: str
    target: int
    fold: int
    attribution: str

    @property
    def name(self) -> str:
        return self.path.stem


def list_samples(directory: str | Path = SAMPLES_DIR) -> list[SampleClip]:
    """All bundled clips in class order; empty when the folder is absent."""
    directory = Path(directory)
    index = directory / "index.csv"
    if not index.is_file():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        return [
            SampleClip(directory / row["file"], row["label"], int(row["target"]), int(row["fold"]), row["attribution"])
            for row in csv.DictReader(handle)
        ]


def samples_by_label(directory: str | Path = SAMPLES_DIR) -> dict[str, list[SampleClip]]:
    grouped: dict[str, list[SampleClip]] = {}
    for clip in list_samples(directory):
        grouped.setdefault(clip.label, []).append(clip)
    return grouped
