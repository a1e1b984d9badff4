"""GPU timings for scripts/gpu_check.sh.

Times the benchmark suite's own cases (benchmarks/cases.py: the ops at the models' shapes,
forward and forward+backward, and the models' inference and training steps, batch 8 at
224x224) for the suite's four implementations, built on the current CUDA device, in float32
and under bfloat16 autocast. The suite times the CPU only (its cases take no device), so this
script makes CUDA the default device while the cases build their tensors and models, and
leaves the suite's code as it is.

    python scripts/gpu_bench.py --out DIR [--full] [--min-run-time 0.5]

writes DIR/gpu_timings.md (device, versions, the torch.utils.benchmark comparison, failures)
and DIR/gpu_timings.json (median seconds per case, dtype and implementation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.benchmark import Compare, Measurement, Timer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlpmix  # noqa: E402
from benchmarks.cases import Case, all_cases  # noqa: E402
from benchmarks.implementations import IMPLEMENTATIONS, compiled  # noqa: E402

DTYPES = {"f32": None, "bf16 autocast": torch.bfloat16}
WARMUP_CALLS = 2  # the compiled implementations compile here


def measure(case: Case, impl: str, dtype_name: str, min_run_time: float) -> Measurement:
    if compiled(impl):
        torch._dynamo.reset()
    step = case.build(impl)
    autocast = DTYPES[dtype_name]

    def run():
        with torch.autocast("cuda", dtype=autocast or torch.float16, enabled=autocast is not None):
            return step()

    for _ in range(WARMUP_CALLS):
        run()
    timer = Timer(stmt="run()", globals={"run": run}, label=f"{case.label} {case.kind}",
                  sub_label=case.sub_label.replace("f32 cpu", f"{dtype_name} cuda"),
                  description=impl)
    return timer.blocked_autorange(min_run_time=min_run_time)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--full", action="store_true", help="all shapes and all six models")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device", file=sys.stderr)
        return 1

    torch.set_default_device("cuda")
    results, rows, failures = [], [], []
    for case in all_cases(quick=not args.full):
        for dtype_name in DTYPES:
            for impl in IMPLEMENTATIONS:
                try:
                    m = measure(case, impl, dtype_name, args.min_run_time)
                except Exception as e:  # noqa: BLE001  (out of memory, compile errors: report)
                    failures.append(f"{case.name} {dtype_name} {impl}: {type(e).__name__}: {e}")
                    torch.cuda.empty_cache()
                    continue
                results.append(m)
                rows.append(dict(case=case.name, dtype=dtype_name, implementation=impl,
                                 median_s=m.median))
                print(f"{case.name:45s} {dtype_name:14s} {impl:18s} {m.median * 1e3:9.3f} ms",
                      flush=True)

    compare = Compare(results)
    compare.trim_significant_figures()
    args.out.mkdir(parents=True, exist_ok=True)
    info = mlpmix.build_info()
    header = [
        "# GPU timings",
        "",
        f"- device: {torch.cuda.get_device_name()} "
        f"(sm_{''.join(map(str, torch.cuda.get_device_capability()))})",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), mlpmix {info['mlpmix']}, "
        f"backends {info['backends']}",
        f"- cases: {'all' if args.full else 'quick'} (benchmarks/cases.py), batch and shapes as "
        "the CPU suite; times in microseconds, median of torch.utils.benchmark",
        "",
    ]
    body = ["```", str(compare), "```"]
    tail = ["", "## Failures", "", *(f"- {f}" for f in failures)] if failures else []
    (args.out / "gpu_timings.md").write_text("\n".join(header + body + tail) + "\n")
    (args.out / "gpu_timings.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
