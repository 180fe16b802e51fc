"""What the machine can do and what the network asks of it: reference rates and counted FLOPs.

A figure in milliseconds cannot tell a slower machine from a slower program. The same figure as a
share of what this machine's cores achieve on a reference measured in the same run, in the precision
the network ran in, can: a program that got slower drops in share, a slower machine does not.

Two references. ``matmul_gflops`` is a plain dense matrix product, the machine's headline rate.
``LayerReference`` is the network's own convolutions and linear layers, each run bare (one oneDNN call
on random input of the shape it gets in the network, channels-last, at the batch size of the figure). The
targets use the second: how close a CPU's convolutions at batch 1 come to its GEMM depends on the CPU
far more than on this program (the same code ran at 60 % of the bf16 GEMM on an AVX-512 Zen 5 and at
15-29 % on an AMX Xeon, whose 2048^3 GEMM is fast but whose small convolutions are not), while the
layers' own rate moves with the CPU and leaves, in the share, what the program adds: casts, batch-norm,
ReLU, the log-mel, Python.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

GEMM_SIZE = 2048
"""Square matmul side: 17 GFLOP, large enough for the BLAS to reach its peak, a few tenths of a second."""


def matmul_gflops(dtype: torch.dtype, size: int = GEMM_SIZE, repeats: int = 5) -> float:
    """Median GFLOP/s of a ``size``^3 matrix product in ``dtype`` (after one untimed run)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    torch.mm(a, b)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        runs.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(runs) / 1e9


class LayerReference:
    """``model``'s convolutions and linear layers, ready to run bare at one batch size in one precision.

    Each layer gets random input of the shape it sees in a forward of a ``(batch, *input_shape)`` batch.
    ``seconds`` times one pass over them all, so that a benchmark can time it alternately with the figure
    it is the reference of (``timing.paired_ms``): the machine's speed drifts by tens of percent over
    minutes on a shared host, and a reference measured next to the figure drifts with it. The model is
    copied, so no hook touches the caller's.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], batch: int, dtype: torch.dtype) -> None:
        self._runs = [_bare(layer, shape, dtype) for layer, shape in _layer_inputs(model, (batch, *input_shape))]
        self.flops = sum(counted_flops(run) for run in self._runs)
        self.seconds()  # oneDNN picks and caches its kernels on the first call

    def seconds(self) -> float:
        """Wall time of one pass over every layer."""
        with torch.inference_mode():
            start = time.perf_counter()
            for run in self._runs:
                run()
            return time.perf_counter() - start

    def gflops(self, seconds: float) -> float:
        """The rate of a pass that took ``seconds``."""
        return self.flops / seconds / 1e9


def _bare(layer: nn.Module, shape: torch.Size, dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """One call of ``layer``'s operation on random input of ``shape``, without bias, in ``dtype``."""
    x = torch.randn(shape).to(dtype)
    weight = layer.weight.detach().to(dtype)
    if isinstance(layer, nn.Conv2d):
        x, weight = (t.contiguous(memory_format=torch.channels_last) for t in (x, weight))
        return lambda: F.conv2d(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return lambda: F.linear(x, weight)


def _layer_inputs(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[nn.Module, torch.Size]]:
    """Every conv and linear layer of a copy of ``model`` with the input shape it gets from a ``shape`` batch."""
    private = copy.deepcopy(model).float().eval()
    seen: list[tuple[nn.Module, torch.Size]] = []
    for module in private.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.register_forward_hook(lambda layer, args, _: seen.append((layer, args[0].shape)))
    with torch.inference_mode():
        private(torch.zeros(shape))
    return seen


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matmuls and convolutions ``fn`` runs (forward and backward), as torch counts them.

    Element-wise work (batch-norm, ReLU, softmax, the mel filterbank's FFT) is not counted: it is
    memory-bound, a few percent of the time on this network, and has no matmul rate to compare with.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def share(flops: float, milliseconds: float, gflops: float) -> dict[str, float]:
    """Achieved GFLOP/s of ``flops`` done in ``milliseconds`` and its share of a machine rate ``gflops``."""
    achieved = flops / (milliseconds / 1000) / 1e9
    return {"gflops": achieved, "share": achieved / gflops}
