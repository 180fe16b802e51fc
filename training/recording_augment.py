"""Real-recording damage imitated on cached log-mels: background noise, small microphones, rooms.

ESC-50's clips are clean; people's recordings are not. These augmentations give training the
conditions ``audiocnn.perturb`` evaluates, without decoding or an STFT per epoch: each works in the
mel-power domain, where independent sources add (noise), a filter scales each band (a microphone's
band) and a room smears each band's energy forward in time (reverberation). The result goes back
through the front end's own dB reference and floor (``features.db_from_power``), so an augmented
clip is floored and referenced as a recorded one would be. The approximations (a band's gain taken
at its centre, the reverberant energy of a frame spread over the following frames, the chi-square
spread of noise power per cell) are measured against the waveform perturbations in the tests.

Random draws come from the CPU generator, as in ``training.augment``, so every device sees the same
streams and ``--resume`` restores them.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.nn import functional as F

from audiocnn import perturb
from audiocnn.features import FeatureConfig, LogMel, db_from_power
from audiocnn.perturb import NOISE_COLOURS, butterworth_gain, reverb_tail_energy

BAND_LOW_HZ = (0.0, 400.0)
"""Range of a drawn microphone's lower band edge (0: open), in Hz."""
BAND_HIGH_HZ = (3000.0, 9000.0)
"""Range of its upper band edge: from a narrow-band phone call to a laptop's roll-off."""
REVERB_RT60_MIN = 0.15
"""Shortest room drawn (a small furnished room); the longest is the config's ``reverb_rt60_max``."""


def power_from_db(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, x / 10.0)


PROFILE_SECONDS = 20.0
"""Noise measured to learn each colour's mean mel power per band: enough frames for a 1 % estimate."""


@functools.lru_cache(maxsize=32)
def noise_profile(config: FeatureConfig, colour: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per mel band: the mean mel power of unit-power ``colour`` noise as the front end sees it, and
    the relative spread of one cell's power around it (one over the root of the band's effective bins).

    Measured, not derived: ``perturb.coloured_noise`` through the front end's own filterbank, so
    what the window and the filterbank do to the lowest frequencies (where pink and brown noise keep
    much of their power, below the first mel band) is counted as the waveform perturbation counts it.
    """
    front = LogMel(config)
    noise = perturb.coloured_noise(round(PROFILE_SECONDS * config.sample_rate), colour, np.random.default_rng(0))
    with torch.no_grad():
        mean_power = front.mel(torch.from_numpy(noise)).mean(dim=-1)
    fb = front.mel.mel_scale.fb.detach().double()
    effective_bins = fb.sum(dim=0) ** 2 / (fb**2).sum(dim=0).clamp_min(1e-12)
    return mean_power.float(), effective_bins.clamp_min(1.0).rsqrt().float()


def add_noise(
    x: torch.Tensor, snr_db: torch.Tensor, config: FeatureConfig, generator: torch.Generator, colour: str = "white"
) -> torch.Tensor:
    """Log-mels ``(B, 1, mels, frames)`` with ``colour`` noise ``snr_db`` ``(B,)`` below each clip's power.

    The ratio is of waveform power, as ``perturb.add_noise`` defines it: the clip's waveform power is read
    off its mel power by the ratio white noise has (the filterbank is linear and, but for the lowest
    tens of hertz, covers the band evenly). Each cell's noise power varies around its band's mean as a
    log-normal with the band's chi-square spread: a narrow low band flickers, a wide high band is steady,
    as in a spectrogram of real noise.
    """
    profile, spread = noise_profile(config, colour)
    white_total = float(noise_profile(config, "white")[0].sum())  # mel power per unit of waveform power
    power = power_from_db(x)
    clip_power = power.sum(dim=2, keepdim=True).mean(dim=3, keepdim=True) / white_total  # (B, 1, 1, 1)
    level = clip_power / torch.pow(10.0, snr_db.to(x.device) / 10.0)[:, None, None, None]
    sigma = torch.sqrt(torch.log1p(spread**2))[None, None, :, None].to(x.device)
    draws = torch.randn(x.shape, generator=generator).to(x.device)
    fluctuation = torch.exp(sigma * draws - sigma**2 / 2)  # mean 1, relative spread ``spread``
    noise = level * profile.to(x.device)[None, None, :, None] * fluctuation
    return db_from_power(power + noise, config)


def band_limit(x: torch.Tensor, low_hz: torch.Tensor, high_hz: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Each clip through its own Butterworth band (``perturb.butterworth_gain``), taken at each mel band's
    centre: the bands are narrow enough near the edges that the gain barely varies inside one."""
    centres = config.mel_frequencies()
    gains = np.stack([butterworth_gain(centres, float(lo), float(hi)) ** 2 for lo, hi in zip(low_hz, high_hz)])
    power = power_from_db(x) * torch.from_numpy(gains).float().to(x.device)[:, None, :, None]
    return db_from_power(power, config)


def reverberate(x: torch.Tensor, rt60: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Each clip in its own synthetic room (``perturb.room_response``'s model), on mel power.

    A frame's energy reaches the following frames decaying by 60 dB per ``rt60``, carrying
    ``reverb_tail_energy(rt60)`` in all; the loudest bin is brought back to its level, as
    ``perturb.reverberate`` restores the peak, so the room does not double as a gain.
    """
    power = power_from_db(x)
    frame_seconds = config.hop_length / config.sample_rate
    out = torch.empty_like(power)
    for i, seconds in enumerate(rt60.tolist()):
        decay = 6.0 * math.log(10.0) * frame_seconds / seconds  # energy decay per frame, in nepers
        taps = min(x.shape[-1], max(1, math.ceil(math.log(1e6) / decay + 0.5)))  # to -60 dB
        # The tail's energy binned into frames: what arrives within half a frame shares the direct frame.
        edges = torch.exp(-decay * (torch.arange(taps + 1, dtype=torch.float64) + 0.5))
        tail = reverb_tail_energy(seconds) * (edges[:-1] - edges[1:])
        direct = 1.0 + reverb_tail_energy(seconds) * (1.0 - math.exp(-decay / 2))
        kernel = torch.cat([tail.flip(0), torch.tensor([direct], dtype=torch.float64)]).float().to(x.device)
        bands = power[i, 0][:, None, :]  # (mels, 1, frames): one channel per band, same kernel
        wet = F.conv1d(F.pad(bands, (taps, 0)), kernel.view(1, 1, -1))[:, 0, :]
        out[i, 0] = wet * (power[i, 0].amax() / wet.amax().clamp_min(1e-30))
    return db_from_power(out, config)


def augment_recordings(
    x: torch.Tensor,
    noise_prob: float,
    snr_range_db: tuple[float, float],
    band_prob: float,
    reverb_prob: float,
    reverb_rt60_max: float,
    config: FeatureConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Room, then background noise, then microphone (the order sound meets them), each on its own random
    share of the batch; a probability of 0 turns that augmentation off and draws nothing."""
    batch = x.shape[0]
    if reverb_prob > 0:
        chosen = torch.rand(batch, generator=generator) < reverb_prob
        rt60 = REVERB_RT60_MIN + torch.rand(batch, generator=generator) * (reverb_rt60_max - REVERB_RT60_MIN)
        x = _apply_to(x, chosen, lambda rows: reverberate(x[rows], rt60[rows.cpu()], config))
    if noise_prob > 0:
        chosen = torch.rand(batch, generator=generator) < noise_prob
        snr = snr_range_db[0] + torch.rand(batch, generator=generator) * (snr_range_db[1] - snr_range_db[0])
        colours = torch.randint(0, len(NOISE_COLOURS), (batch,), generator=generator)
        for k, colour in enumerate(NOISE_COLOURS):
            # _apply_to calls the effect at once, so binding this iteration's x and colour is what it needs
            def noisy(rows: torch.Tensor, x: torch.Tensor = x, colour: str = colour) -> torch.Tensor:
                return add_noise(x[rows], snr[rows.cpu()], config, generator, colour)

            x = _apply_to(x, chosen & (colours == k), noisy)
    if band_prob > 0:
        chosen = torch.rand(batch, generator=generator) < band_prob
        low = BAND_LOW_HZ[0] + torch.rand(batch, generator=generator) * (BAND_LOW_HZ[1] - BAND_LOW_HZ[0])
        high = BAND_HIGH_HZ[0] + torch.rand(batch, generator=generator) * (BAND_HIGH_HZ[1] - BAND_HIGH_HZ[0])
        x = _apply_to(x, chosen, lambda rows: band_limit(x[rows], low[rows.cpu()], high[rows.cpu()], config))
    return x


def _apply_to(x: torch.Tensor, chosen: torch.Tensor, effect) -> torch.Tensor:
    """``x`` with ``effect(rows)`` replacing the chosen rows (a copy; ``x`` itself is left alone)."""
    rows = torch.nonzero(chosen).flatten().to(x.device)
    if rows.numel() == 0:
        return x
    out = x.clone()
    out[rows] = effect(rows)
    return out
