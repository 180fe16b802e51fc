"""Ship the embedding map's reference clips (assets/embedding.npz) for the shipped checkpoint.

Run: python -m scripts.make_embedding ../shared/esc50
The pooled penultimate features of every fold-5 (held-out) clip, keyed by the checkpoint's
SHA-256, with their t-SNE map: the app uses the file only for that checkpoint and builds its own
map (from the clips it can open) for any other. Prints the build times (features, PCA, t-SNE), how
well each 2-D map keeps the clips' classes together, and how far the out-of-sample placement of a
clip lands from its own t-SNE position.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from audiocnn.checkpoint import DEFAULT_CHECKPOINT
from audiocnn.embedding import ReferenceClips, checkpoint_identity, fit_pca, place, pooled_features, tsne
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
    pca = fit_pca(features).transform(features)
    pca_seconds = time.perf_counter() - started
    started = time.perf_counter()
    layout = tsne(features)
    tsne_seconds = time.perf_counter() - started
    targets = np.array([clip.target for clip in clips])
    reference = ReferenceClips(tuple(clip.path.stem for clip in clips), targets, features,
                               checkpoint_identity(DEFAULT_CHECKPOINT), layout)  # fmt: skip
    reference.save(OUTPUT)
    print(f"{len(clips)} clips: features in {seconds:.1f} s (decoding included), PCA in {pca_seconds * 1000:.1f} ms, "
          f"t-SNE in {tsne_seconds:.1f} s; wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e3:.0f} kB)")  # fmt: skip
    for name, points in (("full feature space (cosine)", features / np.linalg.norm(features, axis=1)[:, None]),
                         ("PCA map", pca), ("t-SNE map", layout)):  # fmt: skip
        agreement = class_agreement(points, targets)
        print(f"  {name}: the 5 nearest clips' majority class is the clip's own for {agreement:.1%}")
    started = time.perf_counter()
    placed = np.array([place(features[i], features, layout, exclude=i) for i in range(len(clips))])
    place_ms = (time.perf_counter() - started) * 1000 / len(clips)
    error = np.median(np.linalg.norm(placed - layout, axis=1)) / layout.std()
    print(f"  placing a clip on the t-SNE map (left out of it): {place_ms:.2f} ms, median {error:.2f} map standard "
          "deviations from its own position")  # fmt: skip


def class_agreement(points: np.ndarray, targets: np.ndarray, k: int = 5) -> float:
    """Share of clips whose ``k`` nearest others (Euclidean) have the clip's class as their majority."""
    distances = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :k]
    return float(np.mean([Counter(targets[row]).most_common(1)[0][0] == t for row, t in zip(nearest, targets)]))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "esc50"))
