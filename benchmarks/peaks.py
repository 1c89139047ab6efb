"""The machine's limits, measured in the benchmark's own run: matmul peaks of fp32 and bf16,
and the FLOPs of one call, so that a speed is also read as a fraction of its dtype's peak.

Imported by ``train_throughput.py`` and ``inference_latency.py`` (run as scripts, beside it).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from medseg.engine.step import cpu_has_native_bf16

#: the dtypes whose peaks the benchmarks measure, by the names their tables use
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(dtype: torch.dtype, device: torch.device, n: int, reps: int) -> float:
    """GFLOP/s of an n x n by n x n matrix product in ``dtype`` (2 n^3 FLOP), median of ``reps``
    after one warm-up: about the most the machine's units give that dtype."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device, dtype)
    b = torch.randn(n, n, generator=generator).to(device, dtype)
    times = []
    for index in range(reps + 1):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if index:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def matmul_peaks(device: torch.device, quick: bool) -> dict[str, float]:
    """:func:`matmul_peak_gflops` of each of :data:`PEAK_DTYPES` (n 2048 on the CPU, 8192 on a
    GPU; 512 and 1 rep with ``quick``). A CPU without native bf16 multiplies bf16 at about
    1 GFLOP/s (minutes for n 2048): its bf16 figure, an emulation's and no limit, is taken at
    n 512."""
    n = 512 if quick else (8192 if device.type == "cuda" else 2048)
    reps = 1 if quick else 5
    emulated = device.type == "cpu" and not cpu_has_native_bf16()
    return {name: matmul_peak_gflops(dtype, device, 512 if emulated and dtype is torch.bfloat16 else n, reps)
            for name, dtype in PEAK_DTYPES.items()}


def count_flops(work: Callable[[], object]) -> int:
    """The FLOPs of one call of ``work`` (convolutions and matrix products, forward and backward:
    :class:`torch.utils.flop_counter.FlopCounterMode`), counted in fp32."""
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def peak_line(peaks: dict[str, float], device: torch.device) -> str:
    """The peaks as one line; on a CPU without native bf16 it says that its bf16 "peak" is an
    emulation's, which bf16 convolutions (oneDNN's) may well exceed."""
    line = "matmul peaks (GFLOP/s): " + ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())
    if device.type == "cpu" and not cpu_has_native_bf16():
        line += " (this CPU has no native bf16: its bf16 figure is emulated, not a limit)"
    return line
