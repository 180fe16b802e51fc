"""Seconds and hertz for every cell of a spectrogram or feature map.

A feature map cell ``(i, j)`` of a node whose total stride is ``(sf, st)`` is centred
(the convolutions pad symmetrically) on mel bin ``i * sf`` and frame ``j * st`` of the
input log-mel, so its axes are the input's axes sampled at those positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiocnn.features import FeatureConfig
from audiocnn.model import STEM_NODES, AudioCNN, activation_tree

NICE_HZ = (100, 500, 1000, 2000, 4000, 8000)
"""Frequencies labelled on the mel axis (ticks), when they fall inside the band."""


@dataclass(frozen=True)
class MapAxes:
    """Axis coordinates of a 2-D map: frame centres in seconds, mel-band centres as labels."""

    seconds: np.ndarray  # (W,)
    hz: np.ndarray  # (H,)

    @property
    def hz_labels(self) -> list[str]:
        """Unique category labels for the frequency rows (the mel axis is not linear in Hz)."""
        labels = [format_hz(f) for f in self.hz]
        if len(set(labels)) < len(labels):
            labels = [f"{label} #{i}" for i, label in enumerate(labels)]
        return labels

    def hz_ticks(self) -> list[str]:
        """Row labels to show as ticks: every row of a coarse map, the rows nearest ``NICE_HZ`` otherwise."""
        labels = self.hz_labels
        if len(labels) <= 16:
            return labels
        rows = sorted({int(np.argmin(np.abs(self.hz - target))) for target in NICE_HZ if target <= self.hz[-1] * 1.1})
        return [labels[row] for row in rows]


def format_hz(hz: float) -> str:
    return f"{hz / 1000:.2f} kHz" if hz >= 1000 else f"{hz:.0f} Hz"


def input_axes(config: FeatureConfig, frames: int | None = None) -> MapAxes:
    """Axes of the model's input log-mel."""
    return MapAxes(config.frame_times(frames), config.mel_frequencies())


def map_axes(config: FeatureConfig, shape: tuple[int, int], stride: tuple[int, int]) -> MapAxes:
    """Axes of a ``(H, W)`` map whose cells are ``stride`` input cells apart."""
    height, width = shape
    mel_centres = config.mel_frequencies()
    rows = np.minimum(np.arange(height) * stride[0], len(mel_centres) - 1)
    columns = np.arange(width) * stride[1]
    return MapAxes(columns * config.hop_length / config.sample_rate, mel_centres[rows])


def cell_milliseconds(config: FeatureConfig, stride: tuple[int, int]) -> float:
    """How much time one cell of a map with this total stride spans (its time step)."""
    return stride[1] * config.hop_length / config.sample_rate * 1000


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def node_strides(model: AudioCNN) -> dict[str, tuple[int, int]]:
    """Total (frequency, time) stride of every browsable node, read from the modules themselves."""
    conv, _, _, pool = model.stem
    conv_stride = _pair(conv.stride)
    pool_stride = _pair(getattr(pool, "stride", 1))  # an identity when the model has no stem pool
    total = (conv_stride[0] * pool_stride[0], conv_stride[1] * pool_stride[1])
    strides = {**dict.fromkeys(STEM_NODES[:-1], conv_stride), STEM_NODES[-1]: total}
    tree = activation_tree(model.config)
    for index, stage in enumerate(model.stages):
        step = _pair(stage[0].conv1.stride)
        total = (total[0] * step[0], total[1] * step[1])
        stage_name = model.stage_name(index)
        strides[stage_name] = total
        for block, names in tree[stage_name].items():
            strides[block] = total
            strides.update(dict.fromkeys(names, total))
    return strides
