"""The training-time augmentations on log-mel batches: each does what its recipe entry says."""

from __future__ import annotations

import pytest
import torch

from training.augment import (
    AugmentConfig,
    augment_batch,
    frequency_shift,
    mixup,
    random_gain,
    scaled_to_hop,
    spec_augment,
    time_shift,
)


def ramp_batch(clips: int = 6, bands: int = 16, frames: int = 40) -> torch.Tensor:
    """Every value distinct and tied to its (clip, band, frame), so any move can be traced."""
    return torch.arange(clips * bands * frames, dtype=torch.float32).view(clips, 1, bands, frames) - 5000


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_time_shift_rolls_each_clip_by_its_own_offset():
    x = ramp_batch()
    shifted = time_shift(x, 0.5, seeded())
    offsets = []
    for clip, moved in zip(x, shifted, strict=True):
        matches = [k for k in range(-20, 21) if torch.equal(torch.roll(clip, k, dims=-1), moved)]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 1, "clips get independent offsets"
    assert torch.equal(time_shift(x, 0.5, seeded()), shifted), "the generator makes it reproducible"
    assert torch.equal(time_shift(x, 0.0, seeded()), x)


def test_frequency_shift_moves_bands_and_fills_with_the_floor():
    x = ramp_batch()
    shifted = frequency_shift(x, 3, seeded(1))
    offsets = []
    for clip, moved in zip(x, shifted, strict=True):
        floor = clip.min()
        found = []
        for k in range(-3, 4):
            expected = torch.full_like(clip, floor.item())
            if k >= 0:
                expected[:, k:] = clip[:, : clip.shape[1] - k]
            else:
                expected[:, :k] = clip[:, -k:]
            if torch.equal(expected, moved):
                found.append(k)
        assert len(found) == 1, "each clip is one shift of itself, with no wrap-around"
        offsets.append(found[0])
    assert len(set(offsets)) > 1
    assert torch.equal(frequency_shift(x, 0, seeded(1)), x)


def test_frequency_shift_off_leaves_the_random_stream_untouched():
    """Off by default, it must not change the augmentations (and so the runs) of the shipped recipe."""
    generator = seeded(3)
    frequency_shift(ramp_batch(), 0, generator)
    assert torch.equal(generator.get_state(), seeded(3).get_state())


def test_negative_frequency_shift_is_refused():
    with pytest.raises(ValueError, match="cannot be negative"):
        AugmentConfig(max_freq_shift=-1)


def test_time_masks_keep_their_length_in_seconds_at_another_hop():
    config = AugmentConfig(max_freq_shift=2)
    assert scaled_to_hop(config, 512, 512) == config
    assert scaled_to_hop(config, 256, 512) == AugmentConfig(max_freq_shift=2, time_mask_width=64)
    assert scaled_to_hop(config, 1024, 512).time_mask_width == 16


def test_gain_is_one_offset_per_clip_within_bounds():
    x = ramp_batch()
    offsets = (random_gain(x, 6.0, seeded()) - x).flatten(1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-3)
    assert offsets.abs().max() <= 6.0 + 1e-3 and offsets[:, 0].unique().numel() == len(x)


def test_spec_augment_masks_whole_bands_and_frames_with_the_floor():
    x = ramp_batch(clips=8, bands=32, frames=64)
    config = AugmentConfig(freq_masks=1, freq_mask_width=5, time_masks=1, time_mask_width=7)
    masked_any = False
    for clip, out in zip(x, spec_augment(x, config, seeded()), strict=True):
        at_floor = (out == clip.min())[0]
        at_floor[0, 0] = True  # the ramp's own floor, masked or not
        bands, frames = at_floor.all(dim=1), at_floor.all(dim=0)
        expected = bands[:, None] | frames[None, :]
        expected[0, 0] = True
        assert torch.equal(at_floor, expected), "only whole bands and whole frames are masked"
        assert bands.sum() <= 5 and frames.sum() <= 7
        assert torch.equal(out[0][~at_floor], clip[0][~at_floor])
        masked_any |= bool(bands.any() or frames.any())
    assert masked_any


def test_mixup_mixes_clips_and_labels_with_the_first_dominant():
    x = ramp_batch(clips=8)
    y = torch.arange(8)
    torch.manual_seed(0)  # the mixing weight comes from torch's global generator
    mixed, targets = mixup(x, y, 10, AugmentConfig(mixup_prob=1.0, mixup_alpha=2.0), seeded())
    assert torch.allclose(targets.sum(1), torch.ones(8))
    own = targets[torch.arange(8), y]
    lam = own.min()
    assert 0.5 <= lam < 1
    for i in range(8):
        if own[i] == 1:  # paired with itself
            assert torch.equal(mixed[i], x[i])
            continue
        assert own[i] == lam
        partner = int(targets[i].argsort()[-2])
        assert targets[i, partner] == pytest.approx(1 - lam.item())
        torch.testing.assert_close(mixed[i], lam * x[i] + (1 - lam) * x[partner])
    untouched_x, one_hot = mixup(x, y, 10, AugmentConfig(mixup_prob=0.0), seeded())
    assert torch.equal(untouched_x, x) and torch.equal(one_hot, torch.eye(10)[:8])


def test_whole_pipeline_keeps_shapes_and_finite_values():
    x = torch.randn(16, 1, 32, 50) * 20 - 40
    y = torch.randint(0, 50, (16,))
    out, targets = augment_batch(x, y, 50, AugmentConfig(max_freq_shift=4), seeded())
    assert out.shape == x.shape and targets.shape == (16, 50)
    assert torch.isfinite(out).all() and torch.allclose(targets.sum(1), torch.ones(16))


def test_augmentation_runs_where_the_batch_lives():
    """A batch on another device (here "meta", which checks devices without computing) stays there:
    the GPU path must not pull it back to the CPU or mix devices."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 1, 32, 40), torch.tensor([0, 1, 2, 3])
    config = AugmentConfig(max_freq_shift=2, mixup_prob=1.0)
    mixed, targets = augment_batch(x.to("meta"), y.to("meta"), 10, config, generator)
    assert mixed.device.type == targets.device.type == "meta" and mixed.shape == x.shape
