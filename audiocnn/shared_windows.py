"""Many overlapping windows scored with one pass of the network over the audio they share.

The network is convolutional up to its pooling, so windows one second apart share four fifths of
their work. ``shared_probabilities`` runs the convolutional stages once over a stretch of the
recording's log-mel and pools each window's share of the last feature map (mean pooling is
linear, so a window's pooled vector is the mean of its cells), then applies the head.

This is an estimate, not the per-window result: inside a window of its own the network sees zero
padding at the window's edges and a dB floor set by the window's own peak, where here it sees the
neighbouring audio and a floor from the loudest frame within half a window. Where the model is
sure the two agree; where two classes are nearly tied (a window straddling two sounds) even a
10 ms shift of the window can swap them, so ``TimelineScan`` rescores such windows exactly
(``EXACT_MARGIN``) and the timeline keeps the per-window answer where it is fragile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from .features import LEVEL_INVARIANT_VERSION, POWER_FLOOR

if TYPE_CHECKING:
    from .inference import Predictor


def output_stride(predictor: Predictor) -> int:
    """Input frames per cell of the last feature map: the stem conv's 2, the stem pool's 2, 2 per later stage."""
    config = predictor.model_config
    return 2 * (2 if config.stem_pool else 1) * 2 ** (len(config.widths) - 1)


def context_samples(predictor: Predictor) -> int:
    """Audio beyond a group's outer windows that the shared pass also sees: half a window, about half the
    last stage's receptive field, so the outer windows' edge cells see neighbours as the inner ones do."""
    return predictor.feature_config.clip_samples // 2


def stretch(predictor: Predictor, num_samples: int, starts: list[int]) -> tuple[int, int]:
    """The samples ``[first, last)`` one shared pass over the windows at ``starts`` runs the network on:
    from ``context_samples`` before the first window to as far after the last, within the recording."""
    context = context_samples(predictor)
    return max(0, starts[0] - context), min(num_samples, starts[-1] + predictor.feature_config.clip_samples + context)


def stretch_frames(predictor: Predictor, num_samples: int, starts: list[int]) -> int:
    """Log-mel frames of that stretch (centred STFT): the input the shared pass pushes through the network."""
    first, last = stretch(predictor, num_samples, starts)
    return (last - first) // predictor.feature_config.hop_length + 1


def shared_probabilities(predictor: Predictor, waveform: np.ndarray, starts: list[int]) -> np.ndarray:
    """Estimated class probabilities ``(len(starts), classes)`` of the windows at ``starts`` (samples).

    One pass over the ``stretch`` around them; its cost is the stretch's frames (``stretch_frames``),
    where per-window scoring costs windows x views x a window's frames.
    """
    config = predictor.feature_config
    model = predictor.compute_model
    first, last = stretch(predictor, waveform.shape[0], starts)
    segment = torch.from_numpy(np.ascontiguousarray(waveform[first:last], dtype=np.float32))
    with torch.inference_mode():
        power = predictor.frontend.mel(segment.unsqueeze(0))[0]  # (mels, frames), fp32 as per window
        db = 10.0 * torch.log10(power.clamp_min(POWER_FLOOR))
        frames = config.num_frames
        # features.db_from_power with each frame's own peak: the loudest frame within half a window
        # (a window's own peak for the frames at its centre) sets the floor, and in version 2 the zero.
        peak = F.max_pool1d(db.amax(dim=0)[None, None], frames, 1, frames // 2)[0, 0, : db.shape[1]]
        if config.version == LEVEL_INVARIANT_VERSION:
            db = torch.clamp_min(db - peak, -config.top_db)
        else:
            db = torch.maximum(db, peak - config.top_db)
        x = db[None, None].contiguous(memory_format=torch.channels_last)
        with predictor._autocast():
            x = model.stem(model.input_norm(x))
            for stage in model.stages:
                for block in stage:
                    x = block(x)
        cells = x[0].float().mean(dim=1)  # (channels, cells): the frequency mean of mean pooling
        pooled = _pool_windows(predictor, cells, (np.asarray(starts) - first) / config.hop_length, frames)
        with predictor._autocast():
            logits = model.head(pooled).float()
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)


def _pool_windows(predictor: Predictor, cells: torch.Tensor, offsets: np.ndarray, frames: int) -> torch.Tensor:
    """Each window's pooled vector ``(windows, channels)`` from the shared cells.

    Cell ``j`` is centred on input frame ``stride * j`` (every strided conv is padded to keep centres
    aligned) and spans half a stride either side. A window scored on its own ends in
    ``ceil(frames / stride)`` cells centred on its frames ``0, stride, 2 stride, ...`` (each strided
    layer keeps ``ceil(n / 2)``) and pools them equally: 14 cells over frames -8 to 216 of a 216-frame
    window, not the window's frames -0.5 to 215.5 (a stretch 3.5 frames later and 8 shorter). So a
    window starting at frame ``offset`` weighs each shared cell by how much of it lies in
    ``offset - stride / 2`` to that plus ``stride * ceil(frames / stride)``; a window that does not
    start on a cell boundary pools the same stretch from the cells around it. (Against pooling the
    window's own frames, on 60 s recordings joined from folds 1-4: the estimate 0.058 from the
    per-window probabilities on average instead of 0.061, and with ``EXACT_MARGIN`` 0.2, 0.7 % of the
    windows disagreeing instead of 1.2 %; README.)
    """
    stride = output_stride(predictor)
    count = cells.shape[1]
    lower = stride * np.arange(count) - stride / 2
    begin = offsets[:, None] - stride / 2
    end = begin + stride * -(-frames // stride)
    weights = np.clip(np.minimum(lower + stride, end) - np.maximum(lower, begin), 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    weighted = torch.from_numpy(weights.astype(np.float32))
    mean = weighted @ cells.T
    if predictor.model_config.pooling == "mean":
        return mean
    # "time-max": the maximum over the cells the window covers, plus the mean
    covered = torch.from_numpy(weights > 0)
    peaks = torch.where(covered[:, :, None], cells.T[None], torch.tensor(float("-inf"))).amax(dim=1)
    return peaks + mean
