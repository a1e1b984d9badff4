"""``python -m benchmarks.gemm_floor [--cases ...] [--threads N]``: the time the eager
reference's matrix products alone take, and so the most any fusion can gain.

One call of a case's eager reference runs under a dispatch mode that records every matrix
product it dispatches (mm, addmm, bmm, baddbmm, convolutions and their backward: forward,
backward and optimizer step alike) with its arguments' shapes and strides. Each distinct
product is then timed alone with ``torch.utils.benchmark`` on fresh tensors of the same
layout, at the same thread count; the **floor** is the sum over the call's products of their
median times. The reference and mlpmix are timed in the same run (interleaved rounds, as in
the suite).

- ``bound`` = reference / floor: the speedup of an implementation that spends no time but
  the reference's matrix products, run at ATen's speed. A target above it needs fewer or
  faster matrix products, not fusion.
- ``mlpmix / floor``: how close mlpmix is to that. Below 1 means mlpmix computes the
  same with cheaper products than the reference's (cross_scale_embed's GEMM against the
  reference's unfold + linear, say).

Each product is replayed on the same tensors, so its operands are warm in cache: the floor
is, if anything, low and the bound high, which keeps "the bound is under the target"
a safe conclusion.

Timed, not profiled: no profiler overhead on the reference's many small ops, and mlpmix's
GEMMs through ``at::cpu`` count like any other. Writes ``<--name>.json`` (default
``gemm_floor``) and its rendering ``.md`` into ``--out`` (default: as ``benchmarks.run``'s,
outside the source tree).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Hashable, List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from . import machine
from .cases import Case, all_cases
from .implementations import REFERENCE
from .report import cell, markdown_table
from .run import DEFAULT_OUT
from .timing import measure

MATRIX_PRODUCTS = {
    torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm,
    torch.ops.aten.convolution, torch.ops.aten.convolution_backward,
}
# Seconds of blocked_autorange per distinct product, and per implementation in each round.
PRODUCT_RUN_TIME = 0.2
CASE_RUN_TIME = 4.0
ROUNDS = 2


class _TensorSpec(tuple):
    """A tensor argument as the replay recreates it: sizes, strides, dtype, device."""


def _spec(value: object) -> Hashable:
    if isinstance(value, torch.Tensor):
        return _TensorSpec((tuple(value.shape), value.stride(), value.dtype, str(value.device)))
    if isinstance(value, (list, tuple)):
        return tuple(_spec(v) for v in value)
    return value


def _materialise(spec: Hashable) -> object:
    if isinstance(spec, _TensorSpec):
        shape, stride, dtype, device = spec
        # Enough storage for the strides (some are 0: expanded biases), filled, then viewed.
        extent = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
        storage = torch.randn(extent, dtype=dtype, device=device)
        return storage.as_strided(shape, stride)
    if isinstance(spec, tuple):
        return [_materialise(s) for s in spec]
    return spec


class ProductRecorder(TorchDispatchMode):
    """Counts the matrix products dispatched under it by (op, argument layouts)."""

    def __init__(self):
        super().__init__()
        self.products: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in MATRIX_PRODUCTS:
            key = (func, _spec(args), tuple(sorted((k, _spec(v)) for k, v in kwargs.items())))
            self.products[key] += 1
        return func(*args, **kwargs)


def product_time_ms(key, threads: int) -> float:
    """Median ms of one recorded product, alone, on fresh tensors of its layout."""
    func, args, kwargs = key
    call_args = [_materialise(a) for a in args]
    call_kwargs = {k: _materialise(v) for k, v in kwargs}
    timer = Timer(stmt="func(*args, **kwargs)", num_threads=threads,
                  globals={"func": func, "args": call_args, "kwargs": call_kwargs})
    # Discarded: the first calls in a process pay one-time costs (thread pool, BLAS set-up,
    # first-touch pages) that made the first product timed read 4x its later time.
    timer.blocked_autorange(min_run_time=PRODUCT_RUN_TIME / 4)
    return timer.blocked_autorange(min_run_time=PRODUCT_RUN_TIME).median * 1e3


def floor(case: Case, threads: int) -> Dict[str, float]:
    """One reference call's matrix products: their GFLOP, their count, and the floor (ms)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        step = case.build(REFERENCE)
        step()  # first-call effects (lazy init) stay out of the recording
        recorder = ProductRecorder()
        with FlopCounterMode(display=False) as flops, recorder:
            step()
    finally:
        torch.set_num_threads(previous)
    floor_ms = sum(n * product_time_ms(key, threads) for key, n in recorder.products.items())
    return {
        "products": sum(recorder.products.values()),
        "distinct": len(recorder.products),
        "GFLOP": flops.get_total_flops() / 1e9,
        "floor ms": floor_ms,
    }


def row_for(case: Case, threads: int) -> Dict[str, object]:
    products = floor(case, threads)
    times = measure(case, [REFERENCE, "mlpmix"], threads, CASE_RUN_TIME, ROUNDS)
    reference_ms, mlpmix_ms = (times[i].median * 1e3 for i in (REFERENCE, "mlpmix"))
    floor_ms = products["floor ms"]
    return {
        "case": case.label, "kind": case.kind, "shape": case.sub_label, "threads": threads,
        **products,
        "floor GFLOP/s": products["GFLOP"] / floor_ms * 1e3 if floor_ms else 0.0,
        "reference ms": reference_ms, "mlpmix ms": mlpmix_ms,
        "speedup": reference_ms / mlpmix_ms,
        "bound": reference_ms / floor_ms if floor_ms else None,
        "mlpmix / floor": mlpmix_ms / floor_ms if floor_ms else None,
    }


COLUMNS = ["case", "kind", "shape", "threads", "products", "distinct", "GFLOP", "floor ms",
           "floor GFLOP/s", "reference ms", "mlpmix ms", "speedup", "bound", "mlpmix / floor"]


def write_markdown(rows: List[Dict[str, object]], facts: Dict[str, str], out: Path, name: str) -> Path:
    """Writes ``<name>.md`` into ``out``: the run's setting, the method and the table
    (``python -m benchmarks.report`` renders a saved ``.json`` again with it)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# The reference's matrix products alone: the floor under any fusion", "",
        f"- machine: {facts['cpu']}; torch {facts['torch']}; {facts['date']}; load average "
        f"{facts['load before']} before, {facts['load after']} after",
        f"- products: the matrix products ({', '.join(sorted(str(p) for p in MATRIX_PRODUCTS))}) "
        "one call of the eager reference dispatches (distinct: by argument layout); floor: "
        f"their median times summed, each timed alone ({PRODUCT_RUN_TIME} s of "
        "blocked_autorange, after a discarded warm-up) on fresh tensors of the recorded layout",
        f"- reference ms, mlpmix ms: medians of {ROUNDS} interleaved rounds of "
        f"{CASE_RUN_TIME / ROUNDS} s each; bound: reference / floor, the speedup if everything "
        "but the reference's matrix products took no time; mlpmix / floor: 1 means mlpmix "
        "spends nothing but those products' time", "",
        markdown_table(rows, COLUMNS), "",
    ]
    path = out / f"{name}.md"
    path.write_text("\n".join(lines))
    return path


def write(rows: List[Dict[str, object]], out: Path, facts: Dict[str, str], name: str) -> Path:
    """Writes ``<name>.json``, the record, and its ``<name>.md``."""
    path = write_markdown(rows, facts, out, name)
    (out / f"{name}.json").write_text(json.dumps({"machine": facts, "rows": rows}, indent=1))
    return path


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gemm_floor", description=__doc__)
    parser.add_argument("--cases", nargs="+", default=None,
                        help="case names or labels (default: the --quick suite's cases)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--name", default="gemm_floor", help="file name stem of the report")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    cases = all_cases(quick=args.cases is None)
    if args.cases:
        cases = [c for c in all_cases() if c.name in args.cases or c.label in args.cases]
    facts = {**machine.describe(), "load before": machine.load_average()}
    rows = []
    for case in cases:
        row = row_for(case, args.threads)
        rows.append(row)
        print(" ".join(f"{c}={cell(row[c])}" for c in COLUMNS), flush=True)
    facts["load after"] = machine.load_average()
    print(f"wrote {write(rows, args.out, facts, args.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
