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


def test_augmentation_draws_only_from_its_generator() -> None:
    """Same generator seed, different global torch seed: the same batch. Mixup is off: its Beta draw comes
    from torch's global generator (``torch.distributions`` takes no generator), which ``last.pt`` saves so
    that a resumed run stays exact; every other draw must come from the run's generator."""
    from training.augment import AugmentConfig, augment_batch

    x, y = torch.randn(6, 1, 32, 40), torch.arange(6)
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        outputs.append(augment_batch(x, y, 10, AugmentConfig(mixup_prob=0.0), torch.Generator().manual_seed(0)))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
