"""Peak memory of one case. On CPU: the growth of the peak RSS over the resident size before
one call, measured in a fresh process per (case, implementation) so cases do not share
allocator state. On CUDA: ``torch.cuda.max_memory_allocated`` over one call, less what was
allocated before it, in this process.

glibc's malloc is told to serve every allocation above 64 KiB with its own mapping, so
freed tensors leave the resident set at once and the peak counts live memory only. The
kernel's peak-RSS counter is reset (``/proc/self/clear_refs``) after a warm-up call.

Usage: ``python -m benchmarks.memory CASE_NAME IMPLEMENTATION THREADS [BATCH]`` prints
bytes.
"""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import sys
from typing import Optional

import torch

from .cases import find

_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def cuda_peak_growth_bytes(case_name: str, impl: str, batch: Optional[int] = None) -> int:
    step = find(case_name, "cuda", batch).build(impl)
    step()
    step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def peak_growth_bytes(case_name: str, impl: str, threads: int,
                      batch: Optional[int] = None) -> int:
    """In this process: warm up, then the peak RSS growth of one call."""
    torch.set_num_threads(threads)
    step = find(case_name, batch=batch).build(impl)
    step()
    step()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    step()
    return (_status_kib("VmHWM") - before) * 1024


def measure(case_name: str, impl: str, threads: int, device: str = "cpu",
            batch: Optional[int] = None) -> Optional[int]:
    """Peak memory growth of one call of case ``case_name`` at ``batch`` (None: the
    device's default; see the module docstring), or None where Linux cannot report it."""
    if device == "cuda":
        return cuda_peak_growth_bytes(case_name, impl, batch)
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", case_name, impl, str(threads)]
        + ([str(batch)] if batch else []),
        capture_output=True, text=True, env={**os.environ, **_ENV},
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement of {case_name} ({impl}) failed:\n{result.stderr}")
    return int(result.stdout.split()[-1])


if __name__ == "__main__":
    print(peak_growth_bytes(sys.argv[1], sys.argv[2], int(sys.argv[3]),
                            int(sys.argv[4]) if len(sys.argv) > 4 else None))
