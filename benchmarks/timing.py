"""Times one (case, implementation, threads) with torch.utils.benchmark."""

from __future__ import annotations

import torch
from torch.utils.benchmark import Measurement, Timer

from .cases import Case
from .implementations import compiled

# Calls before timing: the compiled implementations compile (forward, then backward) here.
WARMUP_CALLS = 2


def measure(case: Case, impl: str, threads: int, min_run_time: float) -> Measurement:
    if compiled(impl):
        # Thread count and grad mode are guards: without a reset the cases would pile up
        # recompilations of the same op until dynamo falls back to eager.
        torch._dynamo.reset()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step = case.build(impl)
        for _ in range(WARMUP_CALLS):
            step()
    finally:
        torch.set_num_threads(previous)
    timer = Timer(
        stmt="step()", globals={"step": step}, num_threads=threads,
        label=f"{case.label} {case.kind}", sub_label=case.sub_label, description=impl,
    )
    return timer.blocked_autorange(min_run_time=min_run_time)
