"""Times the implementations of one (case, threads) with torch.utils.benchmark, in
interleaved rounds: on a shared machine a slow minute then slows every implementation alike
instead of only the one that happened to be running."""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
from torch.utils.benchmark import Measurement, Timer

from .cases import Case
from .implementations import compiled

# Calls before timing: the compiled implementations compile (forward, then backward) here.
WARMUP_CALLS = 2


def _warm_step(case: Case, impl: str, threads: int) -> Callable[[], object]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step = case.build(impl)
        for _ in range(WARMUP_CALLS):
            step()
    finally:
        torch.set_num_threads(previous)
    return step


def measure(case: Case, impls: Sequence[str], threads: int, min_run_time: float,
            rounds: int = 1) -> Dict[str, Measurement]:
    """One Measurement per implementation: `rounds` rounds of blocked_autorange, each round
    timing every implementation once, merged."""
    if any(compiled(impl) for impl in impls):
        # Thread count and grad mode are guards: without a reset the cases would pile up
        # recompilations of the same op until dynamo falls back to eager.
        torch._dynamo.reset()
    timers = {
        impl: Timer(
            stmt="step()", globals={"step": _warm_step(case, impl, threads)},
            num_threads=threads, label=f"{case.label} {case.kind}", sub_label=case.sub_label,
            description=impl,
        )
        for impl in impls
    }
    runs = {impl: [] for impl in impls}
    for _ in range(rounds):
        for impl, timer in timers.items():
            runs[impl].append(timer.blocked_autorange(min_run_time=min_run_time / rounds))
    return {impl: Measurement.merge(runs[impl])[0] for impl in impls}
