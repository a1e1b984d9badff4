"""``python -m benchmarks.gemm_floor [--cases ...] [--threads N]``: where the time goes.

Profiles each case's eager reference and mlpmix with ``torch.profiler`` and splits their
time into matrix products (GEMMs and convolutions, counted with their FLOPs) and everything
else. mlpmix does at least the reference's GEMM arithmetic (the dynamixer backward adds the
recomputed logits; mlpmix's kernels call their GEMMs through ``at::cpu``, out of the
profiler's sight, except oneDNN's linear: its own GEMM column undercounts, and reads 0 where
the BLAS path runs everything, as on Intel CPUs), so ``reference time / reference GEMM
time`` bounds the speedup that fusing everything else can reach with GEMMs no faster than
the reference's: a target above it needs fewer or faster GEMMs, not fusion.
Writes ``gemm_floor.md`` (and ``.json``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile

from . import machine
from .cases import all_cases
from .implementations import REFERENCE
from .report import cell
from .run import DEFAULT_OUT

# oneDNN's linear, which mlpmix's CPU kernels call through the dispatcher (common/gemm_cpu.h);
# the profiler counts no FLOPs for it, so they come from its recorded shapes. Its other
# oneDNN products (mkldnn_matmul) are no dispatcher calls and stay invisible here.
ONEDNN_LINEAR = "mkldnn::_linear_pointwise"
# Profiler events whose self time is matrix-product arithmetic (ATen dispatches GEMMs to
# MKL/oneDNN from these; their FLOPs are counted by the profiler).
GEMM_EVENTS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm",
               ONEDNN_LINEAR, "aten::mkldnn_convolution", "aten::convolution_backward",
               "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward")
# Events the profiler counts FLOPs for (convolutions on the conv2d event, whose self time is
# that of its children: the FLOPs and the times are summed separately).
FLOP_EVENTS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::conv2d")
CALLS = 3


def linear_flops(input_shapes) -> int:
    """2*M*K*N of x (..., K) @ weight (N, K)^T from an event's recorded input shapes."""
    x, weight = input_shapes[0], input_shapes[1]
    return 2 * math.prod(x) * weight[0]


def split(step, threads: int) -> Dict[str, float]:
    """Per call: total ms, GEMM ms and GEMM GFLOP/s of `step` (after two warm-up calls)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step()
        step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True,
                     with_flops=True) as prof:
            for _ in range(CALLS):
                step()
    finally:
        torch.set_num_threads(previous)
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    gemm = [e for e in events if e.key in GEMM_EVENTS]
    gemm_us = sum(e.self_cpu_time_total for e in gemm)
    flops = sum(e.flops or 0 for e in events if e.key in FLOP_EVENTS)
    flops += sum(linear_flops(e.input_shapes) for e in prof.events() if e.name == ONEDNN_LINEAR)
    return {
        "total ms": total_us / CALLS / 1e3,
        "GEMM ms": gemm_us / CALLS / 1e3,
        "GEMM GFLOP/s": flops / (gemm_us * 1e3) if gemm_us else 0.0,
    }


def rows_for(case, threads: int) -> List[Dict[str, object]]:
    measured = {impl: split(case.build(impl), threads) for impl in (REFERENCE, "mlpmix")}
    ref_total = measured[REFERENCE]["total ms"]
    ref_gemm = measured[REFERENCE]["GEMM ms"]
    out = []
    for impl, m in measured.items():
        out.append({
            "case": case.label, "kind": case.kind, "shape": case.sub_label, "threads": threads,
            "implementation": impl, **m,
            "GEMM share": m["GEMM ms"] / m["total ms"],
            "speedup": ref_total / m["total ms"],
            "bound": ref_total / ref_gemm if impl != REFERENCE and ref_gemm else None,
        })
    return out


COLUMNS = ["case", "kind", "shape", "threads", "implementation", "total ms", "GEMM ms",
           "GEMM share", "GEMM GFLOP/s", "speedup", "bound"]


def write(rows: List[Dict[str, object]], out: Path, facts: Dict[str, str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Where the time goes: GEMMs vs the rest (profiled)", "",
        f"- machine: {facts['cpu']}; torch {facts['torch']}; {facts['date']}",
        f"- per call, {CALLS} calls under torch.profiler after two warm-up calls; GEMM = self "
        f"time of {', '.join(GEMM_EVENTS)}",
        "- speedup: reference total / this total (profiled, so small ops weigh a little more "
        "than in the timed suite); bound: reference total / reference GEMM time, the speedup if "
        "everything but the matrix products took no time (mlpmix's kernels run their GEMMs "
        "but oneDNN's linear through at::cpu, unseen by the profiler: its GEMM column "
        "undercounts, to 0 on Intel CPUs)", "",
        "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows), "",
    ]
    path = out / "gemm_floor.md"
    path.write_text("\n".join(lines))
    (out / "gemm_floor.json").write_text(json.dumps({"machine": facts, "rows": rows}, indent=1))
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gemm_floor", description=__doc__)
    parser.add_argument("--cases", nargs="+", default=None,
                        help="case names or labels (default: the --quick suite's cases)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    cases = all_cases(quick=args.cases is None)
    if args.cases:
        cases = [c for c in all_cases() if c.name in args.cases or c.label in args.cases]
    rows = []
    for case in cases:
        for row in rows_for(case, args.threads):
            rows.append(row)
            print(" ".join(f"{c}={cell(row[c])}" for c in COLUMNS), flush=True)
    print(f"wrote {write(rows, args.out, machine.describe())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
