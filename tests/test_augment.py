"""The training-time augmentations on log-mel batches: each does what its recipe entry says."""

from __future__ import annotations

import pytest
import torch

from training.augment import (
    AugmentConfig,
    _mask,
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


def found_shifts(x: torch.Tensor, moved: torch.Tensor, dim: int, span: int) -> list[int]:
    """Each clip's circular shift along ``dim`` (searched within +-``span``)."""
    return [next(k for k in range(-span, span + 1) if torch.equal(torch.roll(a, k, dims=dim - 1), b))
            for a, b in zip(x, moved, strict=True)]  # fmt: skip


def test_time_shifts_cover_exactly_their_range():
    """With a limit of 3 frames (a quarter of 12) every shift from -3 to 3 occurs and no other; a limit
    of 1 frame still shifts."""
    x = torch.arange(300 * 12, dtype=torch.float32).view(300, 1, 1, 12)
    assert set(found_shifts(x, time_shift(x, 0.25, seeded()), 3, 6)) == set(range(-3, 4))
    short = x[..., :4]
    assert set(found_shifts(short, time_shift(short, 0.25, seeded()), 3, 2)) == {-1, 0, 1}


def test_frequency_shifts_cover_exactly_their_range():
    x = torch.arange(300 * 12, dtype=torch.float32).view(300, 1, 12, 1)
    shifted = frequency_shift(x, 2, seeded())
    offsets = set()
    for clip, moved in zip(x, shifted, strict=True):
        inside = moved[0, :, 0] != clip.min()
        offsets.add(int(moved[0, inside, 0][0] - clip[0, :, 0][inside.nonzero()[0, 0]]) // -1)
    assert offsets == set(range(-2, 3))


def test_gains_span_the_whole_range_evenly():
    offsets = (random_gain(torch.zeros(4000, 1, 1, 1), 6.0, seeded()) - 0).flatten()
    assert -6.0 <= offsets.min() < -5.9 and 5.9 < offsets.max() <= 6.0
    assert abs(offsets.mean()) < 0.2 and abs((offsets < 0).float().mean() - 0.5) < 0.05


def masked_runs(out: torch.Tensor) -> list[tuple[int, int]]:
    """(first band, length) of each clip's masked bands; the clip's floor sits in a second column."""
    runs = []
    for clip in out[:, 0]:
        bands = (clip[:, 0] == -1e4).nonzero().flatten().tolist()
        runs.append((bands[0] if bands else -1, len(bands)))
    return runs


def test_mask_widths_and_positions_are_drawn_per_clip():
    """One frequency mask of up to 4 bands on 16: every width 0..4 occurs, and clips masked equally wide
    are masked in different places; with two masks, some clips lose more than 4 bands."""
    x = torch.zeros(400, 1, 16, 2)
    x[..., 1] = -1e4  # the floor every mask fills with
    x[..., 0] = torch.arange(16, dtype=torch.float32)
    one = masked_runs(spec_augment(x, AugmentConfig(freq_masks=1, freq_mask_width=4, time_masks=0), seeded()))
    assert {length for _, length in one} == {0, 1, 2, 3, 4}
    assert len({start for start, length in one if length == 4}) > 5
    for start, length in one:
        assert length == 0 or start + length <= 16
    two = masked_runs(spec_augment(x, AugmentConfig(freq_masks=2, freq_mask_width=4, time_masks=0), seeded()))
    assert max(length for _, length in two) > 4


def test_mixup_at_the_default_alpha_and_never_at_zero():
    x, y = ramp_batch(clips=8), torch.arange(8)
    mixed, _ = mixup(x, y, 10, AugmentConfig(mixup_prob=1.0), seeded())  # the recipe's alpha 0.4
    assert not torch.equal(mixed, x)
    untouched, targets = mixup(x, y, 10, AugmentConfig(mixup_prob=1.0, mixup_alpha=0.0), seeded())
    assert torch.equal(untouched, x) and torch.equal(targets, torch.eye(10)[:8])


def partners(targets: torch.Tensor, y: torch.Tensor) -> list[int]:
    """Each clip's mixing partner (itself when unmixed), read from its soft target."""
    return [int(t.argsort()[-2]) if t[label] < 1 else int(label) for t, label in zip(targets, y, strict=True)]


def test_mixing_partners_are_a_permutation_drawn_from_the_runs_generator():
    """Whether a batch is mixed and who pairs with whom come from the run's generator (only the weight
    comes from torch's global one): two global seeds, the same pairs; and the pairs are a permutation."""
    x, y = torch.randn(12, 1, 8, 10), torch.arange(12)
    config = AugmentConfig(mixup_prob=1.0, max_freq_shift=2)
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        out, targets = augment_batch(x, y, 12, config, seeded(5))
        results.append((partners(targets, y), out))
    assert results[0][0] == results[1][0] and sorted(results[0][0]) == list(range(12))
    assert results[0][0] != list(range(12))
    decisions = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        decisions.append([torch.equal(mixup(x, y, 12, AugmentConfig(mixup_prob=0.5), seeded(s))[0], x)
                          for s in range(12)])  # fmt: skip
    assert decisions[0] == decisions[1] and 0 < sum(decisions[0]) < 12


def test_frequency_shift_draws_from_the_runs_generator():
    x = ramp_batch()
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        outputs.append(augment_batch(x, torch.arange(6), 10, AugmentConfig(max_freq_shift=3, mixup_prob=0.0),
                                     seeded(2))[0])  # fmt: skip
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize(
    ("changes", "accepted"),
    [({"noise_prob": 1.0}, True), ({"noise_prob": 1.01}, False), ({"band_prob": 1.5}, False),
     ({"noise_snr_min_db": 10.0, "noise_snr_max_db": 10.0}, True), ({"reverb_rt60_max": 0.15}, False),
     ({"reverb_rt60_max": 0.151}, True)],
)  # fmt: skip
def test_recording_damage_settings_at_their_edges(changes, accepted):
    if accepted:
        AugmentConfig(**changes)
    else:
        with pytest.raises(ValueError, match=r"is a probability|is reversed|must exceed 0\.15 s"):
            AugmentConfig(**changes)


def masked_counts(size: int, width: int, clips: int = 3000) -> torch.Tensor:
    """Cells one time mask of at most ``width`` covers in each clip of ``size`` frames (row 0 loud, row 1 the floor)."""
    x = torch.stack([torch.full((clips, size), 10.0), torch.zeros(clips, size)], dim=1).unsqueeze(1)
    masked = _mask(x, 1, width, 3, torch.Generator().manual_seed(0))
    return (masked[:, 0, 0] == 0).sum(dim=1)


def test_a_mask_covers_its_whole_drawn_width_inside_the_clip():
    """Widths are uniform on 0..width and a mask is never cut by the clip's edge: on 2 frames with width 2
    a third of the clips lose both, and on 20 frames with width 20 a mask covers 10 frames on average
    (masks drawn to start past the end, or never at 0 when the room is one frame, cover less)."""
    small = masked_counts(2, 2)
    assert [float((small == k).float().mean()) for k in (0, 1, 2)] == pytest.approx([1 / 3] * 3, abs=0.03)
    assert float(masked_counts(20, 20).float().mean()) == pytest.approx(10.0, abs=0.3)
