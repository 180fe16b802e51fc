"""ResNet-style CNN over log-mel spectrograms, with hierarchical activation capture.

Activations are returned by ``forward`` itself rather than collected by hooks, so
every call owns its own dictionary: concurrent requests on one shared model can
never see each other's tensors.
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

Activations = dict[str, torch.Tensor]

# The activation names ``forward`` captures, in forward order; browsers and plots read these, never spell them.
STEM_NODES = ("stem.conv", "stem.bn", "stem.relu", "stem")
"""The stem's captures: convolution, batch-norm, ReLU and the stem's output (after its max-pool, if any)."""
BLOCK_PARTS = ("conv1", "bn1", "relu1", "conv2", "bn2", "shortcut", "out")
"""A residual block's captures, ``layerN.blockM.<part>``."""
NONNEGATIVE_PARTS = ("relu", "relu1", "out")
"""Last name parts of the captures that come out of a ReLU."""
HEAD_NODES = ("pool", "logits")
"""The captures after the last stage: the pooled features and the class scores."""


def block_name(stage: str, index: int) -> str:
    """``layer2``, 0 -> ``layer2.block0``."""
    return f"{stage}.block{index}"


POOLINGS = {
    "mean": "global average pool",
    "time-max": "mean over frequency, then max + mean over time",
}
"""How the last feature map becomes one vector. ``time-max`` lets a short event (one bark in
five seconds of silence) count fully instead of being averaged away with the quiet frames."""


class ModelConfigError(ValueError):
    """A model configuration this code cannot build."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters, stored in the checkpoint."""

    num_classes: int = 50
    stem_channels: int = 64
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.3
    pooling: str = "mean"
    stem_pool: bool = True
    """Max-pool 3x3/2 after the stem conv. Without it every stage sees twice the time and
    frequency resolution (stage 1 at 64x108 for a 128x216 log-mel): +1.9 points on the
    validation split for about twice the inference cost (model card)."""
    architecture: str = field(default="audiocnn-resnet-v1")

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "num_classes", _whole("num_classes", self.num_classes, minimum=2))
        object.__setattr__(self, "stem_channels", _whole("stem_channels", self.stem_channels, minimum=1))
        if self.architecture != "audiocnn-resnet-v1":
            raise ModelConfigError(f"unknown architecture {self.architecture!r}")
        if len(self.widths) != len(self.blocks) or not self.widths:
            raise ModelConfigError("widths and blocks must be non-empty and of equal length")
        if min(self.widths) < 1 or min(self.blocks) < 1:
            raise ModelConfigError("widths and blocks must be positive")
        if self.pooling not in POOLINGS:
            raise ModelConfigError(f"unknown pooling {self.pooling!r}; expected one of {sorted(POOLINGS)}")
        if not isinstance(self.stem_pool, bool):
            raise ModelConfigError(f"stem_pool must be true or false, not {self.stem_pool!r}")
        if not 0 <= self.dropout < 1:
            raise ModelConfigError(f"dropout {self.dropout} is not in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"], data["blocks"] = list(self.widths), list(self.blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelConfigError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


def _whole(name: str, value: Any, minimum: int) -> int:
    """``value`` as a plain int of at least ``minimum``.

    Floats and strings are refused rather than truncated: a checkpoint declaring
    ``stem_channels: 2.5`` is malformed, and building it would fail deep inside torch.
    """
    try:
        whole = int(operator.index(value))
    except TypeError:
        raise ModelConfigError(f"{name} must be an integer, not {value!r}") from None
    if whole < minimum:
        raise ModelConfigError(f"{name} must be at least {minimum}, not {whole}")
    return whole


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN stages plus a (projected when the shape changes) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor, capture: Activations | None = None, prefix: str = "") -> torch.Tensor:
        conv1 = self.conv1(x)
        bn1 = self.bn1(conv1)
        # In place when nothing is captured: saves a tensor per ReLU in training; with capture,
        # bn1/bn2 must stay intact for the activation browser.
        relu1 = torch.relu(bn1) if capture is not None else torch.relu_(bn1)
        conv2 = self.conv2(relu1)
        bn2 = self.bn2(conv2)
        shortcut = self.shortcut(x)
        out = (bn2 + shortcut).relu_()
        if capture is not None:
            for name, value in zip(BLOCK_PARTS, (conv1, bn1, relu1, conv2, bn2, shortcut, out), strict=True):
                capture[f"{prefix}.{name}"] = value
        return out


class AudioCNN(nn.Module):
    """Log-mel ``(B, 1, mels, frames)`` -> class logits ``(B, num_classes)``.

    Layout: input batch-norm (learned feature scaling, so the dB values need no
    hand-picked normalisation), stem conv 7x7/2 + BN + ReLU + max-pool 3x3/2 (an identity
    with ``stem_pool=False``), stages
    of residual blocks (stride 2 from the second stage on), pooling (``POOLINGS``),
    dropout, linear head.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.input_norm = nn.BatchNorm2d(1)
        self.stem = nn.Sequential(
            nn.Conv2d(1, c.stem_channels, 7, 2, 3, bias=False),
            nn.BatchNorm2d(c.stem_channels),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2, 1) if c.stem_pool else nn.Identity(),
        )
        stages, in_channels = [], c.stem_channels
        for index, (width, count) in enumerate(zip(c.widths, c.blocks)):
            stride = 1 if index == 0 else 2
            blocks = [ResidualBlock(in_channels, width, stride)]
            blocks += [ResidualBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.ModuleList(blocks))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(in_channels, c.num_classes)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.pooling == "time-max":
            over_time = x.mean(dim=2)
            return over_time.amax(dim=2) + over_time.mean(dim=2)
        return x.mean(dim=(2, 3))

    @staticmethod
    def stage_name(index: int) -> str:
        return f"layer{index + 1}"

    def forward(
        self, x: torch.Tensor, return_activations: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, Activations]:
        """Logits, and on request every activation keyed by its hierarchical name.

        Names: ``stem.conv``, ``stem.bn``, ``stem.relu``, ``stem`` (after the
        pool), ``layerN.blockM.{conv1,bn1,relu1,conv2,bn2,shortcut,out}``,
        ``layerN.blockM`` and ``layerN`` (block/stage outputs), ``pool``, ``logits``.
        """
        capture: Activations | None = {} if return_activations else None
        x = self.input_norm(x)
        conv, bn, relu, pool = self.stem
        stem_conv = conv(x)
        stem_bn = bn(stem_conv)
        stem_relu = relu(stem_bn) if capture is not None else torch.relu_(stem_bn)
        x = pool(stem_relu)
        if capture is not None:
            capture.update(zip(STEM_NODES, (stem_conv, stem_bn, stem_relu, x), strict=True))
        for stage_index, stage in enumerate(self.stages):
            stage_name = self.stage_name(stage_index)
            for block_index, block in enumerate(stage):
                name = block_name(stage_name, block_index)
                x = block(x, capture, name)
                if capture is not None:
                    capture[name] = x
            if capture is not None:
                capture[stage_name] = x
        pooled = self._pool(x)
        logits = self.head(self.dropout(pooled))
        if capture is None:
            return logits
        capture.update(zip(HEAD_NODES, (pooled, logits), strict=True))
        return logits, capture


def activation_tree(config: ModelConfig) -> dict[str, dict[str, list[str]]]:
    """Stage -> block -> sub-layer names, in forward order, for browsing UIs."""
    tree: dict[str, dict[str, list[str]]] = {"stem": {"stem": list(STEM_NODES)}}
    for stage_index, count in enumerate(config.blocks):
        stage = AudioCNN.stage_name(stage_index)
        tree[stage] = {
            block_name(stage, b): [f"{block_name(stage, b)}.{part}" for part in BLOCK_PARTS] for b in range(count)
        }
    return tree


def architecture(model: AudioCNN, input_shape: tuple[int, int]) -> list[dict[str, Any]]:
    """One row per capture, in forward order: the node, the module that makes it, its output shape for a
    log-mel of ``input_shape`` (mels, frames), and its parameter count. The Model page shows this table."""
    with torch.inference_mode():
        _, activations = model(torch.zeros(1, 1, *input_shape), return_activations=True)
    conv, bn, relu, pool = model.stem
    rows: list[tuple[str, str, tuple[int, ...] | None, nn.Module | None]] = [
        ("input", "log-mel (dB), input batch-norm", (1, *input_shape), model.input_norm)
    ]
    rows += [(node, describe_module(module), None, module) for node, module in zip(STEM_NODES, (conv, bn, relu, pool))]
    for stage_index, stage in enumerate(model.stages):
        for block_index, block in enumerate(stage):
            prefix = block_name(model.stage_name(stage_index), block_index)
            for part in BLOCK_PARTS:
                module = getattr(block, part, None)  # the ReLUs and the sum are functions, not modules
                kind = describe_module(module) if module is not None else ("ReLU" if part != "out" else "add + ReLU")
                rows.append((f"{prefix}.{part}", kind, None, module))
    rows += [("pool", POOLINGS[model.config.pooling], None, None), ("logits", describe_module(model.head), None,
                                                                       model.head)]  # fmt: skip
    return [{"node": node, "module": kind, "output shape": " × ".join(map(str, shape or activations[node].shape[1:])),
             "parameters": count_parameters(module) if module is not None else 0}
            for node, kind, shape, module in rows]  # fmt: skip


def describe_module(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        k, s = module.kernel_size, module.stride
        return f"Conv2d {module.in_channels}→{module.out_channels}, {k[0]}×{k[1]}, stride {s[0]}"
    if isinstance(module, nn.BatchNorm2d):
        return f"BatchNorm2d({module.num_features})"
    if isinstance(module, nn.MaxPool2d):
        return f"MaxPool2d {module.kernel_size}×{module.kernel_size}, stride {module.stride}"
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, nn.ReLU):
        return "ReLU"
    if isinstance(module, nn.Identity):
        return "identity"
    if isinstance(module, nn.Sequential):
        return "projection: " + ", ".join(describe_module(m) for m in module)
    return type(module).__name__


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
