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
    """All bundled clips in class order; empty when the folder is absent.

    Rows whose audio file is missing are skipped: the app offers only clips it can open.
    """
    directory = Path(directory)
    index = directory / "index.csv"
    if not index.is_file():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        clips = [
            SampleClip(directory / row["file"], row["label"], int(row["target"]), int(row["fold"]), row["attribution"])
            for row in csv.DictReader(handle)
        ]
    return [clip for clip in clips if clip.path.is_file()]
