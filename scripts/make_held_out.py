"""Bundle the misclassified held-out clips (assets/held_out): OGG Vorbis, with attribution.

Run after ``python -m training.evaluate --data-dir D --folds 5 --update-clips assets/metrics.json``:
    python -m scripts.make_held_out ../shared/esc50
Every fold-5 clip the shipped model gets wrong, except those already bundled as samples
(assets/samples, FLAC), is encoded as OGG Vorbis at the dataset's 22.05 kHz (about 44 kB per
5 s clip instead of 200 kB of FLAC), so each off-diagonal cell of the Model page's confusion
matrix plays on a fresh clone. Writes index.csv (the samples' format) and ATTRIBUTION.md, and
prints how many bundled copies the model still scores as it scored the original.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from audiocnn.evaluation import CLIPS_KEY
from audiocnn.heldout import HELD_OUT_DIR
from audiocnn.inference import Predictor
from audiocnn.samples import SAMPLES_DIR, list_samples
from scripts.make_samples import attributions, credit_for, write_bundle_index

ROOT = Path(__file__).resolve().parent.parent
METRICS = ROOT / "assets" / "metrics.json"

VORBIS_LEVEL = 0.3
"""soundfile's compression level for Vorbis (0 best, 1 smallest): 0.3 keeps about 22 dB SNR on ESC-50."""


def misclassified(metrics_path: Path = METRICS) -> list[dict]:
    """The per-clip records whose top class is not the true one."""
    records = json.loads(metrics_path.read_text(encoding="utf-8"))[CLIPS_KEY]["clips"]
    return [record for record in records if record["top"][0][0] != record["target"]]


def main(data_dir: str) -> None:
    data = Path(data_dir)
    credits = attributions(data / "LICENSE")
    names = json.loads(METRICS.read_text(encoding="utf-8"))["class_names"]
    sampled = {clip.name for clip in list_samples(SAMPLES_DIR)}
    wrong = misclassified()
    chosen = [record for record in wrong if record["clip"] not in sampled]
    HELD_OUT_DIR.mkdir(parents=True, exist_ok=True)
    keep = {f"{record['clip']}.ogg" for record in chosen}
    for old in HELD_OUT_DIR.glob("*.ogg"):
        if old.name not in keep:
            old.unlink()
    index, lines = [], []
    for record in sorted(chosen, key=lambda r: (r["target"], r["clip"])):
        stem = record["clip"]
        if not (HELD_OUT_DIR / f"{stem}.ogg").is_file():  # an Ogg stream's serial number is random: re-encoding
            source = next((data / "audio").glob(f"{stem}.*"))  # the same clip would add a new blob to git
            audio, rate = sf.read(source, dtype="float32")
            sf.write(HELD_OUT_DIR / f"{stem}.ogg", audio, rate, format="OGG", subtype="VORBIS",
                     compression_level=VORBIS_LEVEL)  # fmt: skip
        credit = credit_for(credits, stem.rsplit("-", 1)[0])
        label = names[record["target"]]
        index.append({"file": f"{stem}.ogg", "label": label, "target": record["target"], "fold": stem.split("-")[0],
                      "attribution": credit})  # fmt: skip
        lines.append(f"- `{stem}.ogg` ({label}): {credit}")
    header = (
        "# Misclassified held-out clips: attribution and licence\n\n"
        f"{len(index)} clips from fold 5 of ESC-50 (K. J. Piczak, *ESC: Dataset for Environmental Sound "
        "Classification*, ACM Multimedia 2015, https://github.com/karoldvl/ESC-50) that the shipped model "
        "misclassifies (the others it misclassifies are among assets/samples), at 22.05 kHz and stored as "
        "OGG Vorbis (lossy). "
    )
    write_bundle_index(HELD_OUT_DIR, index, lines, header)
    size = sum(p.stat().st_size for p in HELD_OUT_DIR.glob("*.ogg"))
    print(f"wrote {len(index)} clips ({size / 1e6:.2f} MB) to {HELD_OUT_DIR}; "
          f"{len(wrong) - len(index)} more misclassified clips are bundled samples")  # fmt: skip
    _check_copies(chosen)


def _check_copies(records: list[dict]) -> None:
    """How many lossy copies keep the top class the evaluation recorded for the original."""
    predictor = Predictor.from_checkpoint()
    paths = [HELD_OUT_DIR / f"{record['clip']}.ogg" for record in records]
    predictions = predictor.predict_batch([predictor.load(path) for path in paths])
    same = [p.top_index == r["top"][0][0] for p, r in zip(predictions, records)]
    drift = [abs(p.probabilities[r["top"][0][0]] - r["top"][0][1]) for p, r in zip(predictions, records)]
    print(f"bundled copies scored like their originals: {sum(same)} of {len(same)} keep the top class; "
          f"its probability moves by {np.median(drift):.3f} (median), {max(drift, default=0):.3f} (max)")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "esc50"))
