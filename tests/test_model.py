"""AudioCNN: output shapes, the full activation tree, and capture not changing the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from audiocnn.model import AudioCNN, ModelConfig, ModelConfigError, activation_tree, count_parameters
from training.recipe import TrainConfig

RECIPE_ARCHITECTURE = TrainConfig(data_dir="", out_dir="").model


def expected_shapes(config: ModelConfig, batch: int, mels: int = 128, frames: int = 216) -> dict[str, tuple]:
    """Every activation's shape, from the documented layout (stem /4, or /2 without its pool;
    then /2 per stage after the first)."""

    def down(size: int) -> int:  # a 3x3 (or 7x7) convolution or pool with stride 2 and "same" padding
        return (size + 1) // 2

    h, w = down(mels), down(frames)
    shapes = {"stem.conv": (batch, config.stem_channels, h, w)}
    shapes["stem.bn"] = shapes["stem.relu"] = shapes["stem.conv"]
    if config.stem_pool:
        h, w = down(h), down(w)
    shapes["stem"] = (batch, config.stem_channels, h, w)
    for stage, (width, count) in enumerate(zip(config.widths, config.blocks)):
        if stage:
            h, w = down(h), down(w)
        for block in range(count):
            name = f"layer{stage + 1}.block{block}"
            for sub in ("conv1", "bn1", "relu1", "conv2", "bn2", "shortcut", "out"):
                shapes[f"{name}.{sub}"] = (batch, width, h, w)
            shapes[name] = (batch, width, h, w)
        shapes[f"layer{stage + 1}"] = (batch, width, h, w)
    shapes["pool"] = (batch, config.widths[-1])
    shapes["logits"] = (batch, config.num_classes)
    return shapes


def tree_names(config: ModelConfig) -> set[str]:
    names = set()
    for stage, blocks in activation_tree(config).items():
        names.add(stage)
        for block, sublayers in blocks.items():
            names.add(block)
            names.update(sublayers)
    return names


@pytest.mark.parametrize(
    "config",
    [
        TINY_MODEL,
        RECIPE_ARCHITECTURE,
        ModelConfig(num_classes=10, stem_channels=4, widths=(4, 8, 8), blocks=(2, 1, 3)),
        ModelConfig(stem_channels=16, widths=(16, 32), blocks=(1, 1), stem_pool=False),
    ],
    ids=["tiny", "recipe", "uneven", "no-stem-pool"],
)
def test_activation_names_and_shapes(config):
    torch.manual_seed(0)
    model = AudioCNN(config).eval()
    with torch.no_grad():
        logits, activations = model(torch.randn(2, 1, 128, 216), return_activations=True)
    assert logits.shape == (2, config.num_classes)
    shapes = expected_shapes(config, 2)
    assert {name: tuple(t.shape) for name, t in activations.items()} == shapes
    assert tree_names(config) == set(shapes) - {"pool", "logits"}
    assert list(activation_tree(config)) == ["stem"] + [f"layer{i + 1}" for i in range(len(config.widths))]
    assert torch.equal(activations["logits"], logits)


def test_tree_lists_sublayers_in_forward_order():
    tree = activation_tree(TINY_MODEL)
    assert tree["stem"] == {"stem": ["stem.conv", "stem.bn", "stem.relu", "stem"]}
    assert tree["layer2"]["layer2.block0"] == [
        f"layer2.block0.{s}" for s in ("conv1", "bn1", "relu1", "conv2", "bn2", "shortcut", "out")
    ]


def test_capture_does_not_change_logits():
    torch.manual_seed(0)
    model = AudioCNN(TINY_MODEL).eval()
    x = torch.randn(3, 1, 128, 216)
    with torch.no_grad():
        plain = model(x)
        captured, _ = model(x, return_activations=True)
    assert isinstance(plain, torch.Tensor)
    assert torch.equal(plain, captured)


def test_other_input_sizes_and_gradients():
    model = AudioCNN(TINY_MODEL).train()
    x = torch.randn(2, 1, 64, 100)
    logits = model(x)
    assert logits.shape == (2, 50)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_parameter_count_and_config_validation():
    model = AudioCNN(RECIPE_ARCHITECTURE)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model) > count_parameters(AudioCNN(TINY_MODEL))
    assert ModelConfig.from_dict(RECIPE_ARCHITECTURE.to_dict()) == RECIPE_ARCHITECTURE
    with pytest.raises(ModelConfigError, match="unknown architecture"):
        ModelConfig(architecture="transformer")
    with pytest.raises(ModelConfigError, match="equal length"):
        ModelConfig(widths=(8, 16), blocks=(1,))
    with pytest.raises(ModelConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"depth": 3})
    with pytest.raises(ModelConfigError, match="dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ModelConfigError, match="unknown pooling"):
        ModelConfig(pooling="attention")
    with pytest.raises(ModelConfigError, match="stem_pool must be true or false"):
        ModelConfig.from_dict({**TINY_MODEL.to_dict(), "stem_pool": "no"})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"stem_channels": -1}, "stem_channels must be at least 1, not -1"),
        ({"stem_channels": 0}, "stem_channels must be at least 1, not 0"),
        ({"stem_channels": 2.5}, "stem_channels must be an integer, not 2.5"),
        ({"stem_channels": "8"}, "stem_channels must be an integer, not '8'"),
        ({"num_classes": 50.0}, "num_classes must be an integer, not 50.0"),
        ({"num_classes": 1}, "num_classes must be at least 2, not 1"),
    ],
)
def test_counts_must_be_whole_and_positive(change, match):
    """Refused here, not deep inside torch when the network is built."""
    with pytest.raises(ModelConfigError, match=match):
        ModelConfig(**{**TINY_MODEL.to_dict(), **change})


def test_counts_become_plain_ints():
    config = ModelConfig(num_classes=np.int64(10), stem_channels=np.int32(8))
    assert type(config.num_classes) is int and type(config.stem_channels) is int


def test_config_without_stem_pool_key_keeps_the_pool():
    """Checkpoints written before the stem pool was optional (the shipped one too) keep it."""
    stored = TINY_MODEL.to_dict()
    del stored["stem_pool"]
    config = ModelConfig.from_dict(stored)
    assert config.stem_pool and isinstance(AudioCNN(config).stem[3], torch.nn.MaxPool2d)


def test_model_without_stem_pool_trains_at_twice_the_resolution():
    """Same weights (the pool has none), so only the feature maps change: twice as tall and wide
    from the stem on. (Stem width 16: with 8 channels in channels-last, torch 2.14.1's CPU backward of this
    layout corrupts memory; the named sizes use 64.)"""
    with_pool = ModelConfig(stem_channels=16, widths=(16, 32), blocks=(1, 1))
    without = ModelConfig(**{**with_pool.to_dict(), "stem_pool": False})
    pooled, full = AudioCNN(with_pool).train(), AudioCNN(without).train()
    assert count_parameters(pooled) == count_parameters(full)
    x = torch.randn(2, 1, 64, 100)
    _, pooled_maps = pooled(x, return_activations=True)
    logits, full_maps = full(x, return_activations=True)
    assert full_maps["layer1"].shape[-2:] == (32, 50) and pooled_maps["layer1"].shape[-2:] == (16, 25)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in full.parameters())


def test_config_without_pooling_key_reads_as_global_average():
    """Checkpoints written before pooling was configurable keep their behaviour."""
    stored = TINY_MODEL.to_dict()
    del stored["pooling"]
    assert ModelConfig.from_dict(stored).pooling == "mean"


def test_time_max_pooling_keeps_a_short_event_at_full_strength():
    """One loud frame must count as much as a feature map full of it in the time dimension (max),
    while global averaging dilutes it by the number of frames."""
    single = torch.zeros(1, 3, 4, 10)
    single[..., 6] = 2.0
    mean_model = AudioCNN(TINY_MODEL)
    time_max = AudioCNN(ModelConfig(**{**TINY_MODEL.to_dict(), "pooling": "time-max"}))
    assert torch.allclose(mean_model._pool(single), torch.full((1, 3), 0.2))
    assert torch.allclose(time_max._pool(single), torch.full((1, 3), 2.0 + 0.2))


def test_time_max_model_trains_and_captures_pool():
    config = ModelConfig(**{**TINY_MODEL.to_dict(), "pooling": "time-max"})
    model = AudioCNN(config).train()
    logits, activations = model(torch.randn(2, 1, 64, 100), return_activations=True)
    assert activations["pool"].shape == (2, config.widths[-1])
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
