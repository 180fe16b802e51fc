"""Ship the embedding map's reference clips (assets/embedding.npz) for the shipped checkpoint.

Run: python -m scripts.make_embedding ../shared/esc50
The pooled penultimate features of every fold-5 (held-out) clip, keyed by the checkpoint's
SHA-256: the app uses the file only for that checkpoint and builds its own map (from the clips it
can open) for any other. Prints the build time of the features and of the PCA.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from audiocnn.checkpoint import DEFAULT_CHECKPOINT
from audiocnn.embedding import ReferenceClips, checkpoint_identity, fit_pca, pooled_features
from audiocnn.inference import Predictor
from training.data import read_metadata, select_folds

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "assets" / "embedding.npz"
FOLD = 5


def main(data_dir: str) -> None:
    predictor = Predictor.from_checkpoint()
    clips = select_folds(read_metadata(data_dir), [FOLD])
    started = time.perf_counter()
    features = pooled_features(predictor, [predictor.load(clip.path) for clip in clips])
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    fit_pca(features)
    pca_ms = (time.perf_counter() - started) * 1000
    reference = ReferenceClips(tuple(clip.path.stem for clip in clips), [clip.target for clip in clips], features,
                               checkpoint_identity(DEFAULT_CHECKPOINT))  # fmt: skip
    reference.save(OUTPUT)
    print(f"{len(clips)} clips: features in {seconds:.1f} s (decoding included), PCA in {pca_ms:.1f} ms; "
          f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e3:.0f} kB)")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "esc50"))
