"""Whether bf16 autocast pays off on a device: one rule for training and serving.

On this network bf16 roughly halves the time of a forward pass and of a training step where
the hardware computes bf16 natively (CUDA GPUs with bf16, x86 CPUs with AVX-512 BF16 or AMX).
Elsewhere oneDNN can still emulate bf16 with AVX-512, which costs rounding and buys no speed,
so those machines (and every machine without AVX-512) stay in fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch

NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""Linux ``/proc/cpuinfo`` flags of x86 instructions that compute in bf16."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no ``/proc/cpuinfo``)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def bf16_pays_off(device: torch.device, flags: frozenset[str] | None = None) -> bool:
    """True where bf16 autocast runs natively on ``device`` (``flags`` overrides the CPU's, for tests)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    native = bool((cpu_flags() if flags is None else flags) & NATIVE_BF16_CPU_FLAGS)
    return native and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
