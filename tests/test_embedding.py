"""audiocnn.embedding: pooled features, the fitted PCA, cosine neighbours and the shipped reference file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import tone

from audiocnn.embedding import (
    EmbeddingError,
    ReferenceClips,
    checkpoint_identity,
    cosine_similarities,
    fit_pca,
    nearest,
    place,
    pooled_features,
    tsne,
)
from audiocnn.inference import Predictor


def test_pca_finds_the_direction_of_spread_and_projects_new_points_without_refitting():
    rng = np.random.default_rng(0)
    along = rng.normal(size=200) * 10.0  # most variance along (1, 1, 0) / sqrt 2
    points = np.stack([along, along, rng.normal(size=200) * 0.1], axis=1) + 5.0
    projection = fit_pca(points)
    assert abs(projection.components[0] @ np.array([1, 1, 0]) / np.sqrt(2)) == pytest.approx(1.0, abs=1e-3)
    assert projection.explained[0] > 0.99
    new = projection.mean + 3.0 * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)  # 3 along the first axis from the mean
    assert projection.transform(new) == pytest.approx([3.0, 0.0], abs=0.01)  # its largest loading is positive
    before = projection.transform(points[:5])
    projection.transform(np.full((50, 3), 1e6))  # projecting far-away points changes nothing fitted
    assert np.array_equal(projection.transform(points[:5]), before)


def test_pca_signs_do_not_flip_between_builds():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(40, 6)) * np.arange(1, 7)
    first, second = fit_pca(points), fit_pca(points[::-1].copy())  # same clips, another order
    assert np.allclose(first.components, second.components, atol=1e-8)
    rows = np.arange(2)
    assert (first.components[rows, np.argmax(np.abs(first.components), axis=1)] > 0).all()


def test_cosine_neighbours_known_answer_exclusion_and_zero_vectors():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.1]])
    similarities = cosine_similarities(np.array([1.0, 0.0]), features)
    assert similarities == pytest.approx([1.0, 0.0, np.sqrt(0.5), 0.0, 2 / np.hypot(2, 0.1)])
    assert [row for row, _ in nearest(np.array([1.0, 0.0]), features, k=3)] == [0, 4, 2]
    assert [row for row, _ in nearest(np.array([1.0, 0.0]), features, k=2, exclude=0)] == [4, 2]
    with pytest.raises(ValueError, match="at least 1"):
        nearest(np.array([1.0, 0.0]), features, k=0)


@pytest.mark.parametrize(
    ("features", "message"),
    [(np.ones((2, 3)), "at least 3 clips"), (np.array([[np.nan, 1.0]] * 4), "NaN"), (np.ones(4), "shape")],
    ids=["too-few", "nan", "1-d"],
)
def test_bad_features_are_refused(features, message):
    with pytest.raises(EmbeddingError, match=message):
        fit_pca(features)


def test_projecting_a_feature_of_the_wrong_size_says_so():
    projection = fit_pca(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(EmbeddingError, match=r"\(clips, 4\)"):
        projection.transform(np.ones(5))


def test_pooled_features_are_the_pool_activation_analyze_captures(tiny_checkpoint):
    predictor = Predictor.from_checkpoint(tiny_checkpoint, bf16=False)
    waves = [tone(5.0, 22050, f)[:, 0] for f in (220.0, 880.0, 3000.0)]
    features = pooled_features(predictor, waves)
    assert features.shape == (3, predictor.model.head.in_features)
    for wave, row in zip(waves, features):
        assert row == pytest.approx(predictor.analyze(wave).activations["pool"], abs=1e-5)


def test_reference_clips_round_trip_and_damage(tmp_path: Path):
    layout = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    features = np.eye(3, dtype=np.float32) * 0.5
    reference = ReferenceClips(("a", "b", "c"), np.array([0, 1, 2]), features, "abc123", layout)
    path = tmp_path / "embedding.npz"
    reference.save(path)
    loaded = ReferenceClips.load(path)
    assert loaded.names == ("a", "b", "c") and loaded.checkpoint == "abc123"
    assert loaded.targets.tolist() == [0, 1, 2] and np.array_equal(loaded.features, reference.features)
    assert np.array_equal(loaded.layout, layout)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(EmbeddingError, match="cannot read"):
        ReferenceClips.load(path)
    with pytest.raises(EmbeddingError, match="2 names, 3 classes"):
        ReferenceClips(("a", "b"), np.array([0, 1, 2]), np.eye(3), "x")


def test_checkpoint_identity_is_the_file_sha256(tmp_path: Path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x" * (3 << 20))  # several read chunks
    assert checkpoint_identity(path) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


def test_the_shipped_map_belongs_to_the_shipped_checkpoint(shipped_checkpoint):
    from ui.embedding import EMBEDDING_PATH

    reference = ReferenceClips.load(EMBEDDING_PATH)
    assert reference.checkpoint == checkpoint_identity(shipped_checkpoint)
    assert len(reference.names) == 400 and all(name.startswith("5-") for name in reference.names)
    assert int(reference.targets[reference.names.index("5-103415-A-2")]) == 2  # ESC-50 names end in the class
    assert all(int(name.rsplit("-", 1)[1]) == target for name, target in zip(reference.names, reference.targets))
    assert reference.layout is not None and reference.layout.shape == (400, 2)


def test_tsne_keeps_clusters_apart_and_is_the_same_every_build():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 5
    labels = np.repeat(np.arange(3), 15)
    features = np.abs(centres[labels] + rng.normal(size=(45, 20)) * 0.3)
    layout = tsne(features, iterations=400)
    assert layout.shape == (45, 2) and np.isfinite(layout).all()
    distances = np.linalg.norm(layout[:, None] - layout[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[np.argmin(distances, axis=1)] == labels).all()  # every clip's nearest point is of its cluster
    assert np.array_equal(tsne(features, iterations=400), layout)  # seeded
    with pytest.raises(EmbeddingError, match="at least 4"):
        tsne(features[:3])


def test_place_is_the_similarity_weighted_mean_of_the_nearest_positions():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    coordinates = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    placed = place(np.array([1.0, 0.0]), features, coordinates, k=2)
    weights = np.array([1.0, np.sqrt(0.5)])  # row 0 (cosine 1), then row 2 (cosine 0.707)
    assert placed == pytest.approx((weights[:, None] * coordinates[[0, 2]]).sum(0) / weights.sum())
    assert place(np.array([1.0, 0.0]), features, coordinates, k=1, exclude=0) == pytest.approx([0.0, 10.0])
