"""Known answers at the edges of the explained modules: cases mutation testing (scripts/mutation.sh)
found no test for."""

from __future__ import annotations

import numpy as np
import torch

from audiocnn.explain import occluded_copies
from audiocnn.features import FeatureConfig


def test_occlusion_of_single_frames() -> None:
    """``slice_frames=1``, the finest occlusion, silences each frame alone (it used to be accepted by the
    check only because nothing tried it)."""
    logmel = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3) + 1
    copies, bounds = occluded_copies(logmel, 1)
    assert list(bounds) == [0, 1, 2, 3] and copies.shape == (3, 1, 2, 3)
    for i in range(3):
        expected = logmel[0].clone()
        expected[..., i] = 1.0  # the clip's floor
        assert torch.equal(copies[i], expected)


def test_frame_times_of_another_length() -> None:
    config = FeatureConfig(hop_length=441, sample_rate=22050)
    np.testing.assert_allclose(config.frame_times(4), [0.0, 0.02, 0.04, 0.06])
    assert len(config.frame_times()) == config.num_frames
