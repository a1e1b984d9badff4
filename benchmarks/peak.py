"""The machine's matrix-product peak, measured once per run: the GFLOP/s of a large square
``torch.mm`` (``SIZE`` x ``SIZE``, into a preallocated output; the fastest block of
``blocked_autorange``, as other processes on a shared machine only ever slow a block down)
in float32 and, where the device has native bfloat16 arithmetic
(``machine.native_bf16`` on CPU, ``torch.cuda.is_bf16_supported`` on CUDA), in bfloat16, at
each of the run's thread counts. The report gives each row's achieved GFLOP/s as a
fraction of the peak in its precision (``of``).

The record (``machine["matmul peak"]``): ``{"size": SIZE, "GFLOP/s": {dtype name: {threads
(a string, as JSON keys are): GFLOP/s}}}``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from torch.utils.benchmark import Timer

from . import machine

SIZE = 2048
# Seconds of timing per (dtype, thread count): with the warm-up call, about a second for
# float32 and bfloat16 at one thread count.
RUN_TIME = 0.4


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtypes(device: str = "cpu") -> List[torch.dtype]:
    """float32, and bfloat16 where ``device`` has native bf16 arithmetic."""
    native = machine.native_bf16() if device == "cpu" else torch.cuda.is_bf16_supported()
    return [torch.float32] + ([torch.bfloat16] if native else [])


def gflops(dtype: torch.dtype, threads: int, device: str, size: int, run_time: float) -> float:
    """GFLOP/s of ``torch.mm`` of two ``size`` x ``size`` matrices of ``dtype`` on
    ``threads`` threads (the fastest block, after one warm-up call)."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    out = torch.empty(size, size, dtype=dtype, device=device)  # no allocation in the timing
    timer = Timer("torch.mm(a, b, out=out)", globals={"torch": torch, "a": a, "b": b, "out": out},
                  num_threads=threads)
    timer.timeit(1)
    return 2 * size ** 3 / min(timer.blocked_autorange(min_run_time=run_time).times) / 1e9


def measure(threads: Sequence[int], device: str = "cpu") -> Dict[str, object]:
    """The peak record of a run at ``threads``."""
    return {"size": SIZE, "GFLOP/s": {
        dtype_name(dtype): {str(n): gflops(dtype, n, device, SIZE, RUN_TIME) for n in threads}
        for dtype in dtypes(device)}}


def of(record: Optional[Dict[str, object]], dtype: torch.dtype, threads: int) -> Optional[float]:
    """The peak GFLOP/s in ``dtype`` at ``threads`` (float32's where ``dtype``'s was not
    measured: without native bf16 the bf16 products run in float32), or None where
    ``record`` has none (results saved before the peak was measured)."""
    if not record:
        return None
    peaks = record["GFLOP/s"]
    return peaks.get(dtype_name(dtype), peaks["float32"]).get(str(threads))


def describe(record: Optional[Dict[str, object]]) -> Optional[str]:
    """The record in words: ``torch.mm 2048x2048: float32 150.2 GFLOP/s at 1 thread, ...``."""
    if not record:
        return None
    size = record["size"]
    per_dtype = [f"{dtype} " + ", ".join(
        f"{value:.1f} GFLOP/s at {threads} thread{'s' if threads != '1' else ''}"
        for threads, value in peaks.items()) for dtype, peaks in record["GFLOP/s"].items()]
    return f"torch.mm {size}x{size}: " + "; ".join(per_dtype)
