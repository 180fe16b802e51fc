"""How strongly every channel of every node responds to each bundled sample clip.

Built once per process (one forward pass per batch of clips, no gradients) so the
Layers page can answer "which sample clips excite this channel most" instantly for
any node and channel, and let a person listen to them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from audiocnn.inference import Predictor
from audiocnn.samples import SampleClip

BATCH = 10


@dataclass(frozen=True)
class SampleIndex:
    clips: tuple[SampleClip, ...]
    channel_means: dict[str, np.ndarray]  # node -> (clips, channels): mean activation over the map

    def top_clips(self, node: str, channel: int, k: int = 5) -> list[tuple[SampleClip, float]]:
        """The ``k`` clips with the highest mean activation of ``channel`` at ``node``."""
        values = self.channel_means[node][:, channel]
        order = np.argsort(-values, kind="stable")[:k]
        return [(self.clips[i], float(values[i])) for i in order]


def build_sample_index(
    predictor: Predictor,
    clips: Sequence[SampleClip],
    nodes: Sequence[str],
    progress: Callable[[float], None] | None = None,
) -> SampleIndex:
    """Run every clip through the model once, keeping per-channel means of ``nodes`` (bundled clips are trusted)."""
    means: dict[str, list[np.ndarray]] = {node: [] for node in nodes}
    for start in range(0, len(clips), BATCH):
        batch = clips[start : start + BATCH]
        features = predictor.logmel([predictor.load(clip.path) for clip in batch])
        with torch.inference_mode():
            _, activations = predictor.forward(features, return_activations=True)
        for node in nodes:
            means[node].append(activations[node].float().mean(dim=(2, 3)).numpy())
        if progress is not None:
            progress(min(1.0, (start + len(batch)) / len(clips)))
    return SampleIndex(tuple(clips), {node: np.concatenate(values) for node, values in means.items() if values})
