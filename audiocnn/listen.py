"""Hear an explanation: what the model listened to, what it ignored, and what the model makes of each.

A map lives on log-mel cells; sound lives on STFT bins. The kept cells (the ``share`` of the map
ranked highest, as ``faithfulness.ranking`` orders them) become a 0/1 mask on the mel cells, which
the front end's own mel filterbank (``LogMel``'s, so the bands are exactly those the model hears)
carries to STFT bins: each bin takes the filterbank-weighted mean of the bands that cover it, a soft
mask that fades across band edges. The STFT uses the front end's window, FFT size and hop, so STFT
frames are the log-mel frames; the masked STFT (original phase) is inverted to audio. The complement
mask gives "what it ignored"; the two parts sum to the window up to the STFT round trip.

Both parts go back through the model (``Predictor.predict``, every test-time view): *fidelity-in*
means the kept part alone still gives the class, *fidelity-out* that the removed part loses it
(Paissan et al., L-MAC, ICML 2024, score ESC-50 explanations this way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .attribution import Target
from .faithfulness import ranking
from .features import LogMel
from .inference import Predictor

DEFAULT_KEEP = 0.2
"""Share of the map's cells kept by default (the app's starting point and the evaluation's rate)."""


@dataclass(frozen=True)
class Listening:
    """The two parts of one window and how the model scores each."""

    kept: np.ndarray  # (samples,) what the model listened to
    removed: np.ndarray  # (samples,) what it ignored
    share: float
    target: Target
    kept_score: float  # the class's probability (or A's share against B) on the kept part
    removed_score: float
    kept_top: int  # the top class of each part
    removed_top: int

    @property
    def fidelity_in(self) -> bool:
        """The kept part alone still gives the class (for a pair: still favours A over B)."""
        if isinstance(self.target, tuple):
            return self.kept_score > 0.5
        return self.kept_top == self.target

    @property
    def fidelity_out(self) -> bool:
        """The removed part loses the class (for a pair: no longer favours A over B)."""
        if isinstance(self.target, tuple):
            return self.removed_score <= 0.5
        return self.removed_top != self.target


def band_weights(frontend: LogMel) -> np.ndarray:
    """``(stft bins, mels)``: how much each mel band stands for each STFT bin (rows sum to 1).

    A bin no band covers (0 Hz, or above ``f_max``) follows its nearest band by centre frequency,
    so a kept low band keeps the DC below it and nothing is silently dropped or doubled.
    """
    bank = frontend.mel.mel_scale.fb.detach().double().numpy()  # (bins, mels)
    totals = bank.sum(axis=1, keepdims=True)
    weights = np.divide(bank, totals, out=np.zeros_like(bank), where=totals > 0)
    centres = (bank * np.arange(bank.shape[0])[:, None]).sum(axis=0) / np.maximum(bank.sum(axis=0), 1e-12)
    for row in np.flatnonzero(totals[:, 0] <= 0):
        weights[row, int(np.argmin(np.abs(centres - row)))] = 1.0
    return weights


def keep_mask(relevance: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """0/1 on the mel cells: the ``share`` of cells the map ranks highest."""
    if not 0 < share < 1:
        raise ValueError(f"the kept share must be between 0 and 1 (exclusive), not {share}")
    mask = np.zeros(relevance.size, np.float64)
    mask[ranking(relevance, seed)[: round(share * relevance.size)]] = 1.0
    return mask.reshape(relevance.shape)


def split(frontend: LogMel, window: np.ndarray, mel_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The window's audio under the mel mask carried to STFT bins, and under its complement."""
    config = frontend.config
    spectrogram = frontend.mel.spectrogram
    audio = torch.from_numpy(np.asarray(window, np.float32)).double()
    stft_window = spectrogram.window.double()
    stft = torch.stft(audio, config.n_fft, config.hop_length, window=stft_window, center=True,
                      pad_mode=spectrogram.pad_mode, return_complex=True)  # fmt: skip
    if stft.shape[-1] != mel_mask.shape[-1]:
        raise ValueError(f"the mask has {mel_mask.shape[-1]} frames, the window's STFT {stft.shape[-1]}")
    bins = torch.from_numpy(band_weights(frontend) @ mel_mask)  # (bins, frames) in [0, 1]

    def invert(mask: torch.Tensor) -> np.ndarray:
        out = torch.istft(stft * mask, config.n_fft, config.hop_length, window=stft_window, center=True,
                          length=audio.shape[0])  # fmt: skip
        return out.float().numpy()

    return invert(bins), invert(1.0 - bins)


def listen(predictor: Predictor, window: np.ndarray, relevance: np.ndarray, target: Target,
           share: float = DEFAULT_KEEP) -> Listening:  # fmt: skip
    """Split one model window by a map and score both parts in one batch."""
    kept, removed = split(predictor.frontend, window, keep_mask(relevance, share))
    on_kept, on_removed = predictor.predict_batch([kept, removed])

    def score(prediction) -> float:
        p = prediction.probabilities
        if isinstance(target, tuple):
            a, b = target
            return float(p[a] / max(p[a] + p[b], 1e-300))
        return float(p[target])

    return Listening(kept, removed, share, target, score(on_kept), score(on_removed), on_kept.top_index,
                     on_removed.top_index)  # fmt: skip
