"""Known answers at the edges of the explained modules: cases mutation testing (scripts/mutation.sh)
found no test for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiocnn.checkpoint import load_checkpoint
from audiocnn.explain import grad_cam, occluded_copies, occluded_patches
from audiocnn.features import FeatureConfig
from audiocnn.inference import Prediction


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


def test_a_ranking_of_one_is_the_top_class() -> None:
    """``ranked(1)`` is the smallest ranking allowed; ties keep the class order (a stable sort)."""
    prediction = Prediction(np.array([0.1, 0.45, 0.45]), ("a", "b", "c"))
    assert prediction.ranked(1) == [("b", 0.45)]
    assert prediction.ranked(2) == [("b", 0.45), ("c", 0.45)]
    assert prediction.ranked() == [("b", 0.45), ("c", 0.45), ("a", 0.1)]


def test_htk_mel_scale_known_values() -> None:
    """HTK mel: 6300 Hz is 2595 * log10(10) = 2595 mel, so bands spaced evenly from 0 to 2595 mel
    are centred on 700 * (10 ** (k / (n_mels + 1)) - 1) Hz. A wrong constant in either direction of the
    conversion moves the top centres by hertz."""
    config = FeatureConfig(f_min=0.0, f_max=6300.0, n_mels=8)
    k = np.arange(1, 9)
    np.testing.assert_allclose(config.mel_frequencies(), 700.0 * (10.0 ** (k / 9) - 1.0), rtol=1e-9)


def test_one_band_patches_and_refused_sizes() -> None:
    """Patches one band high tile a 2 x 3 log-mel row by row, frequency-major; a patch with no bands
    or no frames is refused (either alone), and each function's refusal names that function."""
    logmel = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3) + 1
    copies, boxes = occluded_patches(logmel, 1, 3)
    assert boxes.tolist() == [[0, 1, 0, 3], [1, 2, 0, 3]]
    assert torch.equal(copies[:, 0], torch.tensor([[[1.0, 1, 1], [4, 5, 6]], [[1, 2, 3], [1, 1, 1]]]))
    for bands, frames in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match=f"at least 1 band x 1 frame, not {bands} x {frames}"):
            occluded_patches(logmel, bands, frames)
    two = logmel.repeat(2, 1, 1, 1)
    with pytest.raises(ValueError, match=r"^occluded_patches expects a single clip"):
        occluded_patches(two, 1, 1)
    with pytest.raises(ValueError, match=r"^occluded_copies expects a single clip"):
        occluded_copies(two, 1)


def test_grad_cam_of_chosen_layers_and_its_refusal(tiny_checkpoint) -> None:
    """``layers`` picks the maps computed; a batch is refused by a message that names ``grad_cam``."""
    model = load_checkpoint(tiny_checkpoint).model
    maps, _ = grad_cam(model, torch.randn(1, 1, 32, 40), 3, layers=["layer1"])
    assert set(maps) == {"layer1"} and maps["layer1"].shape == (32, 40)
    with pytest.raises(ValueError, match=r"^grad_cam expects a single clip"):
        grad_cam(model, torch.randn(2, 1, 32, 40), 3)
