"""Linear CKA against known answers: itself, invariances, the one-feature case, the feature-space formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiocnn import cka
from audiocnn.cka import cka_from_grams, cka_matrix, gram, linear_cka


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def feature_space_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The paper's equation (5): ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F) on column-centred features."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def orthogonal(rng: np.random.Generator, size: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((size, size)))
    return q


def test_a_representation_is_identical_to_itself(rng):
    x = rng.standard_normal((30, 7))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transforms_isotropic_scaling_and_offsets(rng):
    x, y = rng.standard_normal((40, 6)), rng.standard_normal((40, 9))
    reference = linear_cka(x, y)
    assert 0.05 < reference < 0.95
    assert linear_cka(x @ orthogonal(rng, 6), y) == pytest.approx(reference, rel=1e-10)
    assert linear_cka(x, 2.5 * y @ orthogonal(rng, 9)) == pytest.approx(reference, rel=1e-10)
    assert linear_cka(x + 3.0, y - 7.0) == pytest.approx(reference, rel=1e-10)  # centred: offsets do not count
    assert linear_cka(x @ orthogonal(rng, 6), x) == pytest.approx(1.0, abs=1e-12)


def test_not_invariant_to_stretching_one_feature(rng):
    """Only isotropic scaling is free: an anisotropic one changes the representation's geometry."""
    x = rng.standard_normal((50, 4))
    assert linear_cka(x, x * np.array([1.0, 1.0, 1.0, 20.0])) < 0.8


def test_one_feature_each_is_the_squared_correlation(rng):
    x = rng.standard_normal(60)
    y = 0.6 * x + 0.8 * rng.standard_normal(60)
    assert linear_cka(x[:, None], y[:, None]) == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-10)


def test_matches_the_feature_space_formula_and_is_symmetric(rng):
    x, y = rng.standard_normal((25, 3, 4)), rng.standard_normal((25, 5))  # maps are flattened per example
    x[:, 0, 0] += 2 * y[:, 0]
    expected = feature_space_cka(x.reshape(25, -1), y)
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert linear_cka(y, x) == pytest.approx(expected, rel=1e-10)


def test_gram_in_chunks_equals_the_whole_product(rng, monkeypatch):
    x = rng.standard_normal((8, 2, 37)).astype(np.float32)
    monkeypatch.setattr(cka, "GRAM_CHUNK", 10)
    flat = x.reshape(8, -1).astype(np.float64)
    np.testing.assert_allclose(gram(x), flat @ flat.T, rtol=1e-12)
    exact = gram(x)  # a bf16 store (the app keeps stage outputs so) rounds each feature by at most 2**-8
    np.testing.assert_allclose(gram(torch.from_numpy(x).to(torch.bfloat16)), exact, atol=1e-2 * np.abs(exact).max())


def test_matrix_rows_are_the_first_models_layers(rng):
    x, z = rng.standard_normal((20, 5)), rng.standard_normal((20, 5))
    matrix = cka_matrix([gram(x), gram(z)], [gram(x)])
    assert matrix.shape == (2, 1)
    assert matrix[0, 0] == pytest.approx(1.0) and matrix[1, 0] == pytest.approx(linear_cka(z, x))


def test_a_dead_layer_matches_only_another_dead_layer(rng):
    live, dead = rng.standard_normal((10, 4)), np.ones((10, 4))
    assert linear_cka(dead, live) == 0.0 and linear_cka(dead, 0 * live) == 1.0
    assert not np.isnan(linear_cka(np.zeros((10, 3)), live))


def test_mismatched_examples_are_refused(rng):
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(rng.standard_normal((5, 2)), rng.standard_normal((6, 2)))
    with pytest.raises(ValueError, match="square Grams"):
        cka_from_grams(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="two examples"):
        linear_cka(np.ones((1, 3)), np.ones((1, 3)))
