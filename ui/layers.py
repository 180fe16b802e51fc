"""The activation hierarchy as the Layers page browses it, and what each node's values mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audiocnn.model import NONNEGATIVE_PARTS, ModelConfig, activation_tree


def is_nonnegative(node: str) -> bool:
    """Whether a node's values come out of a ReLU (the stem's max-pool keeps them >= 0)."""
    return node == "stem" or node.rsplit(".", 1)[-1] in NONNEGATIVE_PARTS


def browsable_nodes(config: ModelConfig) -> list[str]:
    """Every node of the tree, in forward order."""
    return [node for blocks in activation_tree(config).values() for names in blocks.values() for node in names]


def short_name(node: str, stem_pool: bool = True) -> str:
    """``layer2.block0.conv1`` -> ``conv1``; the stem's output reads ``pool`` (``stem out`` when the
    model has no stem pool, where it equals ``relu``)."""
    if node == "stem":
        return "pool" if stem_pool else "stem out"
    return node.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class NodeStats:
    """Summary of one activation tensor ``(C, H, W)``."""

    mean: float
    maximum: float
    share_zero: float  # exactly zero (post-ReLU: switched off)
    share_negative: float  # below zero (pre-ReLU: what the next ReLU would switch off)


def node_stats(values: np.ndarray) -> NodeStats:
    return NodeStats(
        float(values.mean()),
        float(values.max()),
        float(np.mean(values == 0)),
        float(np.mean(values < 0)),
    )


def channel_ranking(values: np.ndarray) -> np.ndarray:
    """Channel indices, most active first (mean over the map)."""
    return np.argsort(-values.reshape(values.shape[0], -1).mean(axis=1), kind="stable")
