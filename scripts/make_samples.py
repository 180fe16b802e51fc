"""Build assets/samples: 2 held-out fold-5 ESC-50 clips per class, FLAC, with attribution.

Run: python scripts/make_samples.py ../shared/esc50
Picks, per class, the first two clips (by file name) from different Freesound sources,
re-encodes them losslessly at the dataset's 22.05 kHz, and writes index.csv plus
ATTRIBUTION.md from the dataset's LICENSE.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "samples"
PER_CLASS = 2
FOLD = 5


def attributions(license_path: Path) -> dict[str, str]:
    """Clip stem -> attribution line from the ESC-50 LICENSE file."""
    pattern = re.compile(r"^- \[(?P<stem>[^\]]+?)\.\w+\]: (?P<text>.+)$")
    found = {}
    for line in license_path.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line.strip())
        if match:
            found[match["stem"]] = match["text"]
    return found


def credit_for(credits: dict[str, str], clip: str) -> str:
    """Exact match, else the entry that extends the name (the LICENSE has typos like ``5-141683-Ad``)."""
    if clip in credits:
        return credits[clip]
    near = [text for key, text in credits.items() if key.startswith(clip)]
    if len(near) != 1:
        raise KeyError(f"no unique attribution for {clip} in the ESC-50 LICENSE")
    return near[0]


INDEX_FIELDS = ["file", "label", "target", "fold", "attribution"]
"""The columns of a bundle's index.csv (``audiocnn.samples`` reads them)."""

LICENCE_NOTE = (
    "The dataset is licensed CC BY-NC 3.0 (the ESC-10 subset CC BY 3.0): these clips and anything derived from "
    "them are for **non-commercial use only**. Each clip is derived from a Freesound recording:\n\n"
)


def write_bundle_index(folder: Path, index: list[dict], lines: list[str], header: str) -> None:
    """A bundle's index.csv and its ATTRIBUTION.md (``header``, the licence note, one credit line per clip)."""
    with (folder / "index.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=INDEX_FIELDS)
        writer.writeheader()
        writer.writerows(index)
    (folder / "ATTRIBUTION.md").write_text(header + LICENCE_NOTE + "\n".join(lines) + "\n", encoding="utf-8")


def main(data_dir: str) -> None:
    data = Path(data_dir)
    credits = attributions(data / "LICENSE")
    rows = [r for r in csv.DictReader((data / "meta" / "esc50.csv").open()) if int(r["fold"]) == FOLD]
    rows.sort(key=lambda r: (int(r["target"]), r["filename"]))
    chosen: dict[int, list[dict]] = {}
    for distinct_sources in (True, False):  # prefer different recordings; fall back when a class has one
        for row in rows:
            picks = chosen.setdefault(int(row["target"]), [])
            if len(picks) >= PER_CLASS or row in picks:
                continue
            if not distinct_sources or all(p["src_file"] != row["src_file"] for p in picks):
                picks.append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.flac"):
        old.unlink()
    index, lines = [], []
    for target in sorted(chosen):
        for row in chosen[target]:
            stem = Path(row["filename"]).stem
            source = next((data / "audio").glob(f"{stem}.*"))
            audio, rate = sf.read(source, dtype="int16")
            sf.write(OUT / f"{stem}.flac", audio, rate, format="FLAC", subtype="PCM_16", compression_level=1.0)
            credit = credit_for(credits, stem.rsplit("-", 1)[0])
            index.append({"file": f"{stem}.flac", "label": row["category"], "target": target,
                          "fold": row["fold"], "attribution": credit})  # fmt: skip
            lines.append(f"- `{stem}.flac` ({row['category']}): {credit}")
    header = (
        "# Sample clips: attribution and licence\n\n"
        f"{len(index)} clips from fold {FOLD} of ESC-50 (K. J. Piczak, *ESC: Dataset for Environmental Sound "
        "Classification*, ACM Multimedia 2015, https://github.com/karoldvl/ESC-50), resampled to 22.05 kHz "
        "and stored as FLAC. "
    )
    write_bundle_index(OUT, index, lines, header)
    size = sum(p.stat().st_size for p in OUT.glob("*.flac"))
    print(f"wrote {len(index)} clips ({size / 1e6:.1f} MB) to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "esc50"))
