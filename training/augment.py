"""Batch augmentation on cached log-mel tensors: time and frequency shift, gain, real-recording damage
(``training.recording_augment``: noise, microphones, rooms; off by default), SpecAugment, mixup.

Working on tensors (not waveforms) keeps epochs free of decoding and STFTs, which is
what makes CPU training practical. Random draws come from a CPU generator, so every
device sees the same streams (and ``--resume`` restores them); the arithmetic runs on the
device the batch lives on, so a GPU never waits for the CPU to augment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from audiocnn.features import FeatureConfig

from .recording_augment import REVERB_RT60_MIN, augment_recordings


@dataclass(frozen=True)
class AugmentConfig:
    max_shift_fraction: float = 0.5  # circular time shift, fraction of the clip
    gain_db: float = 6.0  # uniform gain in +-dB
    freq_masks: int = 2
    freq_mask_width: int = 16  # mel bands
    time_masks: int = 2
    time_mask_width: int = 32  # frames (0.74 s at the default hop; see ``scaled_to_hop``)
    mixup_alpha: float = 0.4
    mixup_prob: float = 0.8
    max_freq_shift: int = 0  # mel bands up or down; 0 = off
    noise_prob: float = 0.0  # share of clips given background noise; 0 = off
    noise_snr_min_db: float = 5.0  # its signal-to-noise ratio is drawn uniformly in [min, max]
    noise_snr_max_db: float = 30.0
    band_prob: float = 0.0  # share of clips heard through a small microphone's band; 0 = off
    reverb_prob: float = 0.0  # share of clips put in a synthetic room; 0 = off
    reverb_rt60_max: float = 1.0  # its RT60 is drawn uniformly from 0.15 s up to this

    def __post_init__(self) -> None:
        if self.max_freq_shift < 0:
            raise ValueError(f"max_freq_shift counts mel bands and cannot be negative, not {self.max_freq_shift}")
        for name in ("noise_prob", "band_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability (0 to 1), not {getattr(self, name)}")
        if self.noise_snr_min_db > self.noise_snr_max_db:
            raise ValueError(f"noise SNR range {self.noise_snr_min_db}..{self.noise_snr_max_db} dB is reversed")
        if self.reverb_rt60_max <= REVERB_RT60_MIN:
            raise ValueError(f"reverb_rt60_max must exceed {REVERB_RT60_MIN} s, not {self.reverb_rt60_max}")

    @property
    def damages_recordings(self) -> bool:
        """Whether any real-recording augmentation is on (they need the front end's settings)."""
        return max(self.noise_prob, self.band_prob, self.reverb_prob) > 0


def scaled_to_hop(config: AugmentConfig, hop_length: int, reference_hop: int) -> AugmentConfig:
    """``config`` with time masks as long in seconds at ``hop_length`` as at ``reference_hop``, the hop
    its widths were tuned for. Mask widths count frames, so without this a finer hop would quietly
    shorten every mask."""
    return replace(config, time_mask_width=round(config.time_mask_width * reference_hop / hop_length))


def time_shift(x: torch.Tensor, max_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Roll each clip along time by its own random offset (ESC-50 sounds are position-free)."""
    frames = x.shape[-1]
    limit = int(frames * max_fraction)
    if limit == 0:
        return x
    shifts = torch.randint(-limit, limit + 1, (x.shape[0],), generator=generator)
    index = ((torch.arange(frames).unsqueeze(0) - shifts.unsqueeze(1)) % frames).to(x.device)
    return torch.gather(x, -1, index[:, None, None, :].expand_as(x))


def frequency_shift(x: torch.Tensor, max_bands: int, generator: torch.Generator) -> torch.Tensor:
    """Move each clip up or down the mel axis by its own random number of bands.

    A stand-in for pitch variation (a smaller dog, an engine at other revs): above about 1 kHz
    the mel axis is close to logarithmic, so a pitch change is close to a shift there. Bands
    moved in from outside the axis are set to the clip's floor rather than wrapped around.
    """
    if max_bands == 0:
        return x
    bands = x.shape[-2]
    shifts = torch.randint(-max_bands, max_bands + 1, (x.shape[0],), generator=generator)
    source = (torch.arange(bands).unsqueeze(0) - shifts.unsqueeze(1)).to(x.device)
    inside = ((source >= 0) & (source < bands))[:, None, :, None]
    shifted = torch.gather(x, 2, source.clamp(0, bands - 1)[:, None, :, None].expand_as(x))
    return torch.where(inside, shifted, x.amin(dim=(-2, -1), keepdim=True))


def random_gain(x: torch.Tensor, gain_db: float, generator: torch.Generator) -> torch.Tensor:
    """A dB offset per clip: the model should not key on absolute loudness."""
    gains = (torch.rand(x.shape[0], generator=generator) * 2 - 1) * gain_db
    return x + gains.to(x.device)[:, None, None, None]


def _mask(x: torch.Tensor, count: int, width: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    size = x.shape[dim]
    positions = torch.arange(size)
    keep = torch.ones(x.shape[0], size, dtype=torch.bool)
    for _ in range(count):
        widths = torch.randint(0, width + 1, (x.shape[0], 1), generator=generator)
        starts = (torch.rand(x.shape[0], 1, generator=generator) * (size - widths).clamp_min(1)).long()
        keep &= ~((positions >= starts) & (positions < starts + widths))
    shape = [x.shape[0], 1, 1, 1]
    shape[dim] = size
    fill = x.amin(dim=(-2, -1), keepdim=True)  # masked area becomes the clip's floor (silence)
    return torch.where(keep.view(shape).to(x.device), x, fill)


def spec_augment(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment frequency and time masking, independently per clip."""
    x = _mask(x, config.freq_masks, config.freq_mask_width, 2, generator)
    return _mask(x, config.time_masks, config.time_mask_width, 3, generator)


def mixup(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix random pairs of clips and their one-hot labels (on a ``mixup_prob`` share of batches)."""
    targets = torch.nn.functional.one_hot(y, num_classes).float()
    if config.mixup_alpha <= 0 or torch.rand(1, generator=generator).item() >= config.mixup_prob:
        return x, targets
    beta = torch.distributions.Beta(config.mixup_alpha, config.mixup_alpha)
    lam = float(beta.sample())
    lam = max(lam, 1 - lam)  # keep the first clip dominant so the "true" label stays meaningful
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


def augment_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    config: AugmentConfig,
    generator: torch.Generator,
    features: FeatureConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole training-time pipeline: shifts, gain, real-recording damage, SpecAugment, then mixup.

    ``features`` (the front end the log-mels came from) is needed only when a real-recording
    augmentation is on; with them off, nothing is drawn for them, so old recipes keep their streams.
    """
    x = time_shift(x, config.max_shift_fraction, generator)
    x = frequency_shift(x, config.max_freq_shift, generator)
    x = random_gain(x, config.gain_db, generator)
    if config.damages_recordings:
        if features is None:
            raise ValueError("noise, microphone and room augmentations need the log-mels' FeatureConfig")
        snr_range = (config.noise_snr_min_db, config.noise_snr_max_db)
        x = augment_recordings(x, config.noise_prob, snr_range, config.band_prob, config.reverb_prob,
                               config.reverb_rt60_max, features, generator)  # fmt: skip
    x = spec_augment(x, config, generator)
    return mixup(x, y, num_classes, config, generator)
