"""What the machine can do and what the network asks of it: dense matmul rates and counted FLOPs.

A figure in milliseconds cannot tell a slower machine from a slower program. The same figure as a
share of what this machine's cores achieve on a plain dense matrix product, measured in the same
run and in the precision the network ran in, can: a program that got slower drops in share, a
slower machine does not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
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
