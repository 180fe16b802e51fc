"""The Compare page's similarity measures, with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ui.similarity import cosine, layer_similarities


def test_cosine_of_known_vectors() -> None:
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert cosine(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(1.0)
    assert cosine(np.array([1.0, 2.0]), np.array([-1.0, -2.0])) == pytest.approx(-1.0)
    assert cosine(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1 / np.sqrt(2))
    big = np.full(10, 3e38, np.float32)  # float32 products would overflow
    assert cosine(big, big) == pytest.approx(1.0)


def test_silent_maps() -> None:
    zero = np.zeros((2, 3))
    assert cosine(zero, zero) == 1.0 and cosine(zero, np.ones((2, 3))) == 0.0 and cosine(np.ones(3), np.zeros(3)) == 0.0


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match=r"shaped \(2,\) and \(3,\)"):
        cosine(np.ones(2), np.ones(3))


def test_whole_maps_see_where_channel_means_do_not() -> None:
    """The same channel firing at another time: the whole maps share nothing, the channel means are equal."""
    early = np.zeros((2, 1, 4))
    early[0, 0, 0] = 1.0
    late = np.zeros((2, 1, 4))
    late[0, 0, 3] = 1.0
    other_channel = np.zeros((2, 1, 4))
    other_channel[1, 0, 0] = 1.0
    series = layer_similarities({"a": early, "b": early}, {"a": late, "b": other_channel}, ["a", "b"])
    assert series == {"whole maps": [0.0, 0.0], "channel means (ignores where/when)": [1.0, 0.0]}
