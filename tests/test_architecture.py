"""The activation naming scheme and the architecture table, both from ``audiocnn.model``."""

from __future__ import annotations

import torch
from conftest import FOUR_STAGE_MODEL, TINY_MODEL

from audiocnn.model import HEAD_NODES, AudioCNN, activation_tree, architecture, count_parameters
from ui.layers import browsable_nodes, is_nonnegative


def test_the_tree_names_exactly_what_forward_captures() -> None:
    model = AudioCNN(TINY_MODEL).eval()
    with torch.no_grad():
        _, captured = model(torch.randn(1, 1, 32, 40), return_activations=True)
    tree = activation_tree(TINY_MODEL)
    named = [node for blocks in tree.values() for names in blocks.values() for node in names]
    containers = [*tree, *(block for blocks in tree.values() for block in blocks)]
    assert set(captured) == set(named) | set(containers) | set(HEAD_NODES)
    assert browsable_nodes(TINY_MODEL) == named
    for node in named:  # every capture said to come out of a ReLU does
        if is_nonnegative(node):
            assert captured[node].min() >= 0, node
    assert any(captured[node].min() < 0 for node in named if not is_nonnegative(node))


def test_the_architecture_table_lists_every_capture_and_every_parameter() -> None:
    model = AudioCNN(FOUR_STAGE_MODEL)
    rows = architecture(model, (32, 40))
    nodes = [row["node"] for row in rows]
    assert nodes == ["input", *browsable_nodes(FOUR_STAGE_MODEL), *HEAD_NODES]  # relu1 included
    assert sum(row["parameters"] for row in rows) == count_parameters(model)
    by_node = {row["node"]: row for row in rows}
    assert by_node["input"]["output shape"] == "1 × 32 × 40"
    assert by_node["layer1.block0.relu1"]["module"] == "ReLU" and by_node["layer1.block0.out"]["module"] == "add + ReLU"
    assert by_node["layer2.block0.shortcut"]["module"].startswith("projection: Conv2d 8→16, 1×1, stride 2")
    assert by_node["logits"]["output shape"] == "50" and by_node["logits"]["module"] == "Linear 32→50"
