"""Log-mel front end: the one place the spectrogram settings live.

``FeatureConfig`` is stored in every checkpoint and both the training data path and
the inference path build their transform from it with ``LogMel``, so a model can
never be served with features other than those it was trained on.

Feature versions (``FeatureConfig.version``; a checkpoint keeps the one it was trained with):

1. dB of absolute mel power, floored ``top_db`` below the clip's loudest bin. The network sees
   the recording's level: the previous shipped model (version 1) lost 6 points of fold-5 accuracy
   at -20 dB and 16 at -30 dB, and phone recordings are quieter than ESC-50's clips (median peak
   -3 dBFS).
2. Level-invariant: the same dB, referenced to the clip's own loudest bin (that bin is 0 dB,
   the floor ``-top_db``). A gain is a constant dB offset on every bin, so subtracting the peak
   removes it exactly, for any gain, at no cost. The loudest time-frequency bin was chosen over
   the two alternatives: the waveform's peak sample (one click or clipped sample would set the
   reference) and the clip's RMS or loudness (which moves with how much of the clip is silence,
   so the same bark would read differently in a longer pause). The floor already hangs from the
   same peak, so version 2 only moves the scale's zero. Invariance holds while the loudest bin
   stays above the power clamp's -100 dB plus ``top_db``, i.e. to about -70 dBFS peaks.

The shipped model is version 2 (its second stage moved a version-1 first stage to it with
``--feature-version 2``). New runs still use ``DEFAULT_FEATURE_VERSION`` (1) unless told otherwise,
because the first stage's from-scratch recipe has only been measured in version 1; the default
moves once a version-2 first stage is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import nn

SUPPORTED_FEATURE_VERSIONS = (1, 2)
DEFAULT_FEATURE_VERSION = 1
LEVEL_INVARIANT_VERSION = 2

POWER_FLOOR = 1e-10
"""Mel power below this (-100 dB) is clamped before the logarithm, so silence gives no -inf."""

MAX_N_FFT = 16384
"""Largest FFT accepted: 85 ms even at 192 kHz, far above any useful window, far below one whose
buffers (window, filterbank, padded frames) would exhaust memory."""


class FeatureConfigError(ValueError):
    """A feature configuration this code cannot reproduce faithfully."""


@dataclass(frozen=True)
class FeatureConfig:
    """Audio and log-mel settings; defaults match the 22.05 kHz ESC-50 copy."""

    sample_rate: int = 22050
    clip_seconds: float = 5.0
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 11025.0
    top_db: float = 80.0
    version: int = DEFAULT_FEATURE_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.version not in SUPPORTED_FEATURE_VERSIONS:
            supported = ", ".join(map(str, SUPPORTED_FEATURE_VERSIONS))
            problems.append(f"feature version {self.version} (supported: {supported})")
        if not 4000 <= self.sample_rate <= 192000:
            problems.append(f"sample_rate {self.sample_rate} Hz")
        if not 0.1 <= self.clip_seconds <= 60:
            problems.append(f"clip_seconds {self.clip_seconds}")
        if self.n_fft < 16 or not 1 <= self.hop_length <= self.n_fft:
            problems.append(f"n_fft {self.n_fft} / hop_length {self.hop_length}")
        if self.n_fft > MAX_N_FFT:
            problems.append(f"n_fft {self.n_fft} (at most {MAX_N_FFT})")
        elif self.n_fft // 2 >= self.clip_samples:  # the centred STFT reflect-pads n_fft // 2 samples each side
            problems.append(f"n_fft {self.n_fft} for a {self.clip_samples}-sample clip (n_fft // 2 must be shorter)")
        if not 8 <= self.n_mels <= 512:
            problems.append(f"n_mels {self.n_mels}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            problems.append(f"f_min {self.f_min} / f_max {self.f_max} for {self.sample_rate} Hz")
        if self.top_db <= 0:
            problems.append(f"top_db {self.top_db}")
        if problems:
            raise FeatureConfigError("unsupported feature config: " + "; ".join(problems))

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def num_frames(self) -> int:
        """Frames per clip (centred STFT, as torchaudio computes it)."""
        return self.clip_samples // self.hop_length + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FeatureConfigError(f"unsupported feature config keys: {sorted(unknown)}")
        return cls(**{"version": 1, **data})  # a config saved before versions existed is version 1

    def frame_times(self, num_frames: int | None = None) -> np.ndarray:
        """Centre time in seconds of each spectrogram frame."""
        n = self.num_frames if num_frames is None else num_frames
        return np.arange(n) * self.hop_length / self.sample_rate

    def mel_frequencies(self) -> np.ndarray:
        """Centre frequency in Hz of each mel band (HTK mel scale, as torchaudio uses)."""
        mel_min, mel_max = _hz_to_mel(self.f_min), _hz_to_mel(self.f_max)
        mels = np.linspace(mel_min, mel_max, self.n_mels + 2)[1:-1]
        return _mel_to_hz(mels)


def _hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class LogMel(nn.Module):
    """Waveform batch ``(B, samples)`` -> log-mel in dB ``(B, 1, n_mels, frames)``.

    The dB floor (``top_db`` below the loudest bin) and, in version 2, the dB reference are
    taken per clip, so a clip's features never depend on which other clips share its batch.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            f_min=config.f_min,
            f_max=config.f_max,
            power=2.0,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        return db_from_power(self.mel(waveform.float()), self.config).unsqueeze(1)


def db_from_power(power: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Mel power ``(..., n_mels, frames)`` -> the dB features of ``config``'s version, per clip.

    Shared by ``LogMel`` and by training's augmentations that work in the power domain (noise,
    microphones, rooms), so an augmented clip is floored and referenced exactly as a recorded one.
    """
    db = 10.0 * torch.log10(power.clamp_min(POWER_FLOOR))
    peak = db.amax(dim=(-2, -1), keepdim=True)
    if config.version == LEVEL_INVARIANT_VERSION:
        return torch.clamp_min(db - peak, -config.top_db)
    return torch.maximum(db, peak - config.top_db)
