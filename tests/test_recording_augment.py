"""Mel-domain imitations of real recordings, measured against the waveform perturbations they stand for."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ROOT

from audiocnn import perturb
from audiocnn.audio import load_audio
from audiocnn.features import LEVEL_INVARIANT_VERSION, FeatureConfig, LogMel
from training import recording_augment as ra

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def bark() -> np.ndarray:
    return load_audio(ROOT / "assets" / "samples" / "5-203128-A-0.flac", CONFIG.sample_rate)[: CONFIG.clip_samples]


def logmel(waveform: np.ndarray, config: FeatureConfig = CONFIG) -> torch.Tensor:
    return LogMel(config)(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)))  # (1, 1, mels, frames)


@pytest.mark.parametrize(("snr", "colour"), [(20.0, "white"), (10.0, "white"), (20.0, "pink")])
def test_mel_noise_matches_noise_added_to_the_waveform(bark, snr, colour):
    dry = logmel(bark)
    real = logmel(perturb.add_noise(bark, snr, colour, seed=1))
    fake = ra.add_noise(dry, torch.tensor([snr]), CONFIG, torch.Generator().manual_seed(0), colour)
    assert abs((fake - real).mean().item()) < 0.75  # the same level of noise, on average over the cells
    assert (fake - real).abs().median().item() < 2.5  # and cell by cell, within the noise's own flicker
    assert (dry - real).abs().median().item() > 8.0  # (the dry clip is far from it: the test can fail)


def test_mel_band_limit_matches_the_filtered_waveform(bark):
    real = logmel(perturb.band_limit(bark, CONFIG.sample_rate, 300.0, 3400.0))
    fake = ra.band_limit(logmel(bark), torch.tensor([300.0]), torch.tensor([3400.0]), CONFIG)
    assert (fake - real).abs().median().item() < 0.1
    assert abs((fake - real).mean().item()) < 0.5


@pytest.mark.parametrize("rt60", [0.3, 0.8])
def test_mel_room_decays_like_the_synthetic_room(rt60):
    """A click in the room: the tail's slope (60 dB per RT60) and its energy against the direct frame."""
    click = np.zeros(CONFIG.clip_samples, np.float32)
    click[CONFIG.sample_rate] = 0.9
    real = 10 ** (logmel(perturb.reverberate(click, CONFIG.sample_rate, rt60, seed=1)) / 10)
    fake = 10 ** (ra.reverberate(logmel(click), torch.tensor([rt60]), CONFIG) / 10)
    frame = round(CONFIG.sample_rate / CONFIG.hop_length)  # the click's frame
    seconds = CONFIG.hop_length / CONFIG.sample_rate
    for power in (real, fake):
        per_frame = 10 * torch.log10(power[0, 0].sum(dim=0))
        lags = torch.arange(2, round(0.5 * rt60 / seconds))
        slope = np.polyfit(lags.numpy() * seconds, per_frame[frame + lags].numpy(), 1)[0]
        assert slope == pytest.approx(-60.0 / rt60, rel=0.12)
    tail = [float(p[0, 0, :, frame + 2 :].sum() / p[0, 0, :, frame].sum()) for p in (real, fake)]
    assert 10 * math.log10(tail[1] / tail[0]) == pytest.approx(0.0, abs=1.5)


def test_off_by_default_draws_nothing_and_changes_nothing(bark):
    x = logmel(bark).repeat(3, 1, 1, 1)
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    out = ra.augment_recordings(x, 0.0, (5.0, 30.0), 0.0, 0.0, 1.0, CONFIG, generator)
    assert out is x and torch.equal(generator.get_state(), state)


@pytest.mark.parametrize("version", [1, LEVEL_INVARIANT_VERSION])
def test_every_effect_on_changes_every_clip_reproducibly_and_keeps_the_front_end(bark, version):
    config = FeatureConfig(version=version)
    x = logmel(bark, config).repeat(4, 1, 1, 1)
    runs = [ra.augment_recordings(x, 1.0, (5.0, 30.0), 1.0, 1.0, 1.0, config, torch.Generator().manual_seed(1))
            for _ in range(2)]  # fmt: skip
    assert torch.equal(runs[0], runs[1])
    out = runs[0]
    assert torch.isfinite(out).all() and out.shape == x.shape
    assert all(not torch.allclose(out[i], x[i]) for i in range(4))
    assert not torch.allclose(out[0], out[1])  # each clip draws its own room, noise and microphone
    peak = out.amax(dim=(-2, -1))
    floor = out.amin(dim=(-2, -1))
    assert torch.all(floor >= peak - config.top_db - 1e-4)
    if version == LEVEL_INVARIANT_VERSION:
        assert torch.all(peak == 0)
    torch.testing.assert_close(x, logmel(bark, config).repeat(4, 1, 1, 1))  # the input is left alone


def test_only_the_chosen_share_is_changed(bark):
    x = logmel(bark).repeat(200, 1, 1, 1)
    out = ra.augment_recordings(x, 0.5, (10.0, 10.0), 0.0, 0.0, 1.0, CONFIG, torch.Generator().manual_seed(2))
    changed = (out != x).flatten(1).any(dim=1).float().mean().item()
    assert 0.38 < changed < 0.62


def test_the_training_pipeline_runs_them_only_when_asked(bark):
    from training.augment import AugmentConfig, augment_batch

    x = logmel(bark).repeat(4, 1, 1, 1)
    y = torch.zeros(4, dtype=torch.long)
    torch.manual_seed(0)  # mixup's Beta draw comes from the global generator
    plain = augment_batch(x, y, 50, AugmentConfig(), torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    told = augment_batch(x, y, 50, AugmentConfig(), torch.Generator().manual_seed(3), CONFIG)
    assert torch.equal(plain[0], told[0])  # off by default: the same streams as before they existed
    noisy = AugmentConfig(noise_prob=1.0, mixup_prob=0.0)
    with pytest.raises(ValueError, match="need the log-mels' FeatureConfig"):
        augment_batch(x, y, 50, noisy, torch.Generator().manual_seed(3))
    quiet = augment_batch(x, y, 50, AugmentConfig(mixup_prob=0.0, freq_masks=0, time_masks=0),
                          torch.Generator().manual_seed(3), CONFIG)  # fmt: skip
    at_0_db = AugmentConfig(noise_prob=1.0, noise_snr_min_db=0.0, noise_snr_max_db=0.0, mixup_prob=0.0,
                            freq_masks=0, time_masks=0)  # fmt: skip
    loud = augment_batch(x, y, 50, at_0_db, torch.Generator().manual_seed(3), CONFIG)
    assert (loud[0] - quiet[0]).mean() > 5  # 0 dB SNR noise fills the quiet cells


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise_prob": 1.5}, "noise_prob is a probability"),
        ({"reverb_prob": -0.1}, "reverb_prob is a probability"),
        ({"noise_snr_min_db": 30.0, "noise_snr_max_db": 5.0}, "is reversed"),
        ({"reverb_rt60_max": 0.1}, "must exceed 0.15 s"),
    ],
)
def test_bad_settings_are_refused(options, message):
    from training.augment import AugmentConfig

    with pytest.raises(ValueError, match=message):
        AugmentConfig(**options)
