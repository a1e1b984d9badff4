"""``python -m benchmarks.run [--quick] [--device cpu|cuda] [--threads N ...] [--batch N ...]
[--out DIR]``: measures the machine's matrix-product peak (``benchmarks/peak.py``), then
times every case for every implementation that applies to it (on CPU by default the float32
ones, then bf16 autocast and bf16 weights; on request the deployment runtimes:
``benchmarks/implementations.py``), in the same interleaved rounds, counts each case's
FLOPs (``benchmarks/flop_count.py``), measures peak memory of the eager ones, and writes
``results.json`` (the record), ``results.md`` and ``results.png`` into DIR (default
``mlpmix-bench`` in the system's temporary directory, outside the source tree: a result
is committed under ``benchmarks/results/`` only by copying it there deliberately).
Implementations whose packages are not installed are left out; the report says why."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import torch

from . import flop_count, machine, memory, peak, report, timing
from .cases import all_cases
from .implementations import KNOWN, applies, compiled, defaults, unavailable

DEFAULT_OUT = Path(tempfile.gettempdir()) / "mlpmix-bench"


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="the S models and one shape per op (CI, `mlpmix bench`)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: ops in float32, models at batch 64 under bfloat16 autocast")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="CPU thread counts (default: 1 and all cores on cpu, all cores on cuda)")
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch sizes of every case (default 8 on cpu, 64 on cuda)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--cases", nargs="+", default=None,
                        help="only these case names or labels (e.g. dynamixer, raftmlp_s/training)")
    parser.add_argument("--implementations", nargs="+", default=None, choices=KNOWN,
                        metavar="IMPL",
                        help="BACKEND[+PRECISION][+compile], timed in this order (default on "
                             f"cpu: {' '.join(defaults('cpu'))}; on cuda: "
                             f"{' '.join(defaults('cuda'))}); any of: {' '.join(KNOWN)}. "
                             "+bf16: bfloat16 autocast, +bf16w: bfloat16 weights (inference); "
                             "aoti, onnxruntime[+int8], openvino: the model exported and run "
                             "there (inference)")
    parser.add_argument("--min-run-time", type=float, default=None,
                        help="seconds of timing per measurement (default 1.0, --quick 0.3)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds per measurement, each timing every implementation once "
                             "and sharing --min-run-time (more on a noisy machine)")
    parser.add_argument("--no-memory", action="store_true", help="skip peak memory")
    parser.add_argument("--name", default="results", help="file name stem of the report")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    all_cores = os.cpu_count() or 1
    threads = args.threads or (sorted({1, all_cores}) if args.device == "cpu" else [all_cores])
    min_run_time = args.min_run_time or (0.3 if args.quick else 1.0)
    cases = [(batch, case) for batch in args.batch or [None]
             for case in all_cases(quick=args.quick, device=args.device, batch=batch)]
    if args.cases:
        cases = [(b, c) for b, c in cases if c.name in args.cases or c.label in args.cases
                 or any(c.name.startswith(p + "/") for p in args.cases)]
        if not cases:
            print(f"no case matches {args.cases}", file=sys.stderr)
            return 2
    implementations = args.implementations or list(defaults(args.device))
    skipped = {impl: why for impl in implementations if (why := unavailable(impl, args.device))}
    for impl, why in skipped.items():
        print(f"not run: {impl}: {why}", file=sys.stderr)
    implementations = [impl for impl in implementations if impl not in skipped]
    load_before = machine.load_average()
    facts = {**machine.describe(args.device), "matmul peak": peak.measure(threads, args.device)}
    print(f"matrix-product peak: {peak.describe(facts['matmul peak'])}", flush=True)
    results = []
    for batch, case in cases:
        impls = [impl for impl in implementations if applies(impl, case.kind)]
        if not impls:
            continue
        flops = flop_count.count(case)
        for n in threads:
            measurements = timing.measure(case, impls, n, min_run_time, args.rounds)
            for impl, measurement in measurements.items():
                peak_bytes = None
                if not args.no_memory and not compiled(impl) and case.kind in ("forward+backward", "training"):
                    peak_bytes = memory.measure(case.name, impl, n, args.device, batch)
                results.append(report.Result(case, impl, n, measurement, peak_bytes, flops))
                print(f"{case.name:55s} {n:2d} threads {impl:22s} {measurement.median * 1e3:9.2f} ms",
                      flush=True)
    paths = report.write(results, args.out, facts, load_before, machine.load_average(),
                         args.name, skipped)
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
