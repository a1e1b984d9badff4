"""Writes a run's results: the JSON record, and from it a markdown report (the table, with
the targets of ``targets.py`` checked) and a PNG bar chart of the speedups over the float32
eager reference.

Each row's ``speedup vs eager reference`` and ``memory vs reference`` are against its
baseline, the eager reference in the row's precision (``implementations.baseline``:
``reference`` for float32, ``reference+bf16`` for ``+bf16``, ``reference+bf16w`` for
``+bf16w``; ``reference`` for ``+int8``); ``speedup vs f32 reference`` is against the
float32 eager reference. ``GFLOP`` is one call's work (``flop_count``), ``GFLOP/s`` that
over the median, ``fraction of peak`` that over the machine's matrix-product peak at the
row's threads in its precision (``peak``: bfloat16 for the bf16 ones, float32 otherwise).

``python -m benchmarks.report FILE.json ... [--out DIR]`` renders the markdown (and, for the
suite's files, the chart) of saved results again and prints each target's verdict: the JSON
is the record, the rest is derived from it. Results saved before the bf16 columns (no
``speedup vs f32 reference``, no ``native bf16``) or the peak render as they are."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch.utils.benchmark import Compare, Measurement

from . import peak
from .cases import Case
from .implementations import BACKENDS, PRECISIONS, REFERENCE, order
from .implementations import parse as implementation
from .targets import TARGETS, Target

COLUMNS = ["case", "kind", "shape", "threads", "implementation", "median ms", "IQR ms",
           "speedup vs eager reference", "speedup vs f32 reference", "GFLOP", "GFLOP/s",
           "fraction of peak", "images/s", "peak memory MiB", "memory vs reference"]


@dataclass
class Result:
    case: Case
    impl: str
    threads: int
    measurement: Measurement
    peak_bytes: Optional[int] = None
    flops: Optional[int] = None  # of one call


def _key(r: Result):
    return (r.case.name, r.threads)


def baseline(impl: str) -> str:
    """The eager reference ``impl``'s speedups and memory are taken against (the float32
    one for a name the suite does not know)."""
    try:
        return implementation(impl).baseline
    except ValueError:
        return REFERENCE


def rows(results: Sequence[Result], peaks: Optional[Dict[str, object]] = None
         ) -> List[Dict[str, object]]:
    """The table of ``results``; ``peaks``: the run's matrix-product peak record
    (``peak.measure``), None for no fraction of peak."""
    by_impl = {(_key(r), r.impl): r for r in results}
    out = []
    for r in results:
        ref = by_impl.get((_key(r), baseline(r.impl)))
        f32 = by_impl.get((_key(r), REFERENCE))
        median = r.measurement.median
        speedup = ref.measurement.median / median if ref else None
        memory_ratio = (r.peak_bytes / ref.peak_bytes
                        if ref and r.peak_bytes is not None and ref.peak_bytes else None)
        gflops = r.flops / median / 1e9 if r.flops is not None else None
        products = implementation(r.impl).precision.products or r.case.products
        machine_peak = peak.of(peaks, products, r.threads)
        fraction = gflops / machine_peak if gflops is not None and machine_peak else None
        out.append({
            "case": r.case.label, "kind": r.case.kind, "shape": r.case.sub_label,
            "threads": r.threads, "implementation": r.impl,
            "median ms": median * 1e3, "IQR ms": r.measurement.iqr * 1e3,
            "speedup vs eager reference": speedup,
            "speedup vs f32 reference": f32.measurement.median / median if f32 else None,
            "GFLOP": r.flops / 1e9 if r.flops is not None else None,
            "GFLOP/s": gflops,
            "fraction of peak": fraction,
            "images/s": r.case.images / median if r.case.images else None,
            "peak memory MiB": r.peak_bytes / 2**20 if r.peak_bytes is not None else None,
            "memory vs reference": memory_ratio,
        })
    return out


def cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.1f}"
    return str(value)


def markdown_table(table: List[Dict[str, object]], columns: Sequence[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    # .get: the results saved before a column was added render it as not measured
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in table]
    return "\n".join(lines)


def _find(table, case, kind, impl, threads, shape=None):
    for row in table:
        if (row["case"], row["kind"], row["implementation"], row["threads"]) == (case, kind, impl, threads) \
                and (shape is None or row["shape"] == shape):
            return row
    return None


def verdicts(table: List[Dict[str, object]], threads: int,
             targets: Sequence[Target] = TARGETS, native_bf16: Optional[bool] = None) -> List[str]:
    """One line per row at ``threads`` that a target covers (the rows of the implementations
    the targets name, in the targets' order: mlpmix, then mlpmix+bf16, ...): each such
    target checked against the row of the implementation it names (targets whose
    implementation did not run are left out). ``native_bf16``: the machine's (targets.Target
    .applies). The lines of an implementation other than mlpmix name it."""
    lines = []
    for impl in dict.fromkeys(t.impl for t in targets):
        for row in table:
            if row["threads"] != threads or row["implementation"] != impl:
                continue
            checks = []
            for target in filter(lambda t: t.covers(row), targets):
                other = _find(table, row["case"], row["kind"], target.against, threads, row["shape"])
                if other:
                    checks.append(target.check(row, other, native_bf16))
            if checks:
                which = "" if impl == "mlpmix" else f", {impl}"
                lines.append(f"- {row['case']} {row['kind']} {row['shape']}{which}: " + "; ".join(checks))
    return lines


def summary(table: List[Dict[str, object]], threads: int, targets: Sequence[Target] = TARGETS,
            native_bf16: Optional[bool] = None) -> List[str]:
    """The verdict per target, one line each (targets with no case in the table are left
    out): met where every case it covers meets it, with how many do and the worst case."""
    lines = []
    for target in targets:
        measured, covered = [], 0
        for row in table:
            if row["threads"] != threads or not target.covers(row):
                continue
            other = _find(table, row["case"], row["kind"], target.against, threads, row["shape"])
            if other is None:
                continue
            covered += 1
            ratio = target.ratio(row, other)
            if ratio is not None:
                measured.append((ratio, row))
        if not covered:
            continue
        if not measured:
            lines.append(f"- {target.describe()}: not measured")
            continue
        met = sum(target.met(ratio) for ratio, _ in measured)
        worst, row = (min if target.measure == "speedup" else max)(measured, key=lambda m: m[0])
        verdict = target.inapplicable(native_bf16) or ("met" if met == len(measured) else "NOT met")
        lines.append(f"- {target.describe()}: {verdict} ({met} of {len(measured)} cases meet "
                     f"it; worst {worst:.2f}x: {row['case']} {row['kind']} {row['shape']})")
    return lines


def _precisions(table: List[Dict[str, object]]) -> List[str]:
    """The precisions (keys of PRECISIONS) of the table's implementations, float32 first."""
    found = set()
    for row in table:
        try:
            found.add(implementation(row["implementation"]).precision.suffix)
        except ValueError:
            found.add("")
    return [p for p in PRECISIONS if p in found]


def bf16_note(table: List[Dict[str, object]], machine: Dict[str, object]) -> List[str]:
    """Whether the bf16 targets apply on the run's machine, where the table has bf16 rows."""
    if all(PRECISIONS[p].products is not torch.bfloat16 for p in _precisions(table)):
        return []
    native, flags = machine.get("native bf16"), machine.get("bf16 flags", "not recorded")
    if native:
        return [f"- native bf16: yes ({flags}); the bf16 targets apply"]
    why = "no" if native is False else "not recorded"
    return [f"- native bf16: {why} (bf16 flags: {flags}); the bf16 columns are as measured, "
            "the bf16 targets not applicable"]


def targets_section(table: List[Dict[str, object]], machine: Dict[str, object]) -> List[str]:
    """The report's ``## Targets`` section: every target checked at the largest thread count
    (the targets are CPU targets: a CUDA run only says so)."""
    if machine.get("device") == "cuda":
        return ["## Targets", "", "- the targets are CPU targets; see the CPU results"]
    threads = max(row["threads"] for row in table)
    native = machine.get("native bf16")
    per_target = summary(table, threads, native_bf16=native)
    if not per_target:
        return [f"## Targets ({threads} threads)", "", *bf16_note(table, machine),
                "- no case of a target in this run"]
    return [f"## Targets ({threads} threads)", "", *bf16_note(table, machine), *per_target,
            "", "Per case:", "", *verdicts(table, threads, native_bf16=native)]


def chart(table: List[Dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thread_counts = sorted({row["threads"] for row in table})
    impls = [i for i in order(r["implementation"] for r in table) if i != REFERENCE]
    cases = list(dict.fromkeys((r["case"], r["kind"], r["shape"]) for r in table))
    fig, axes = plt.subplots(len(thread_counts), 1, squeeze=False,
                             figsize=(max(8, 0.6 * len(cases) * max(len(impls), 1)), 4.5 * len(thread_counts)))
    width = 0.8 / max(len(impls), 1)
    for ax, threads in zip(axes[:, 0], thread_counts):
        for k, impl in enumerate(impls):
            values = []
            for case, kind, shape in cases:
                row = _find(table, case, kind, impl, threads, shape)
                # against the float32 eager reference: every column on one scale (the
                # results saved before the bf16 columns have only the other speedup, the same)
                speedup = row.get("speedup vs f32 reference", row["speedup vs eager reference"]) \
                    if row else None
                values.append(speedup or 0.0)
            ax.bar([i + k * width for i in range(len(cases))], values, width, label=impl)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(cases))])
        ax.set_xticklabels([f"{c}\n{k}\n{s.split(' f32')[0].split(' bf16')[0]}" for c, k, s in cases], fontsize=6, rotation=60, ha="right")
        ax.set_ylabel("speedup vs float32 eager reference")
        ax.set_title(f"{threads} thread(s)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _precision_lines(table: List[Dict[str, object]]) -> List[str]:
    """What the precisions of the table's implementations mean, where it has other than
    float32."""
    precisions = _precisions(table)
    if precisions == [""]:
        return []
    meaning = "; ".join(f"{PRECISIONS[p].description} ({'+' + p if p else 'no suffix'})"
                        for p in precisions)
    return [
        f"- precision, by the implementation's name: {meaning}; the shape column gives the "
        "case's inputs, before an implementation casts them",
        "- speedup vs eager reference, memory vs reference: against the eager reference in "
        "the row's precision (reference, reference+bf16, reference+bf16w; reference for "
        "int8); speedup vs f32 reference: against the float32 eager reference",
    ]


def _runtime_lines(table: List[Dict[str, object]]) -> List[str]:
    """What the table's runtime implementations run, where it has any."""
    backends = dict.fromkeys(row["implementation"].split("+")[0] for row in table)
    runtimes = [f"{b}: {BACKENDS[b].runtime}" for b in backends
                if b in BACKENDS and BACKENDS[b].runtime]
    if not runtimes:
        return []
    return ["- runtimes (model inference; the mlpmix model exported once, outside the timing, "
            "with a free batch): " + "; ".join(runtimes)]


def _peak_lines(machine: Dict[str, object]) -> List[str]:
    """The run's matrix-product peak and how the table's GFLOP/s and fraction of peak are
    taken, where the record has a peak."""
    record = machine.get("matmul peak")
    if not record:
        return []
    return [
        f"- matrix-product peak (fastest block of blocked_autorange): {peak.describe(record)}",
        "- GFLOP: one call's FLOPs (FlopCounterMode over mlpmix's step with the ops' FLOP "
        "formulas, on fake tensors; forward and backward for forward+backward and training); "
        "GFLOP/s: GFLOP over the median; fraction of peak: GFLOP/s over the peak at the row's "
        "threads in its precision (bfloat16 for +bf16 and +bf16w where measured, float32 "
        "otherwise, int8 included)",
    ]


def _skipped_lines(skipped: Optional[Dict[str, str]]) -> List[str]:
    return [f"- not run: {impl} ({why})" for impl, why in (skipped or {}).items()]


def markdown(table: List[Dict[str, object]], machine: Dict[str, object], name: str,
             compare: str = "", skipped: Optional[Dict[str, str]] = None) -> str:
    """The report of a run: its setting, the implementations ``skipped`` and why, the
    targets checked, the table and, when given, ``torch.utils.benchmark.Compare``'s
    output."""
    threads = sorted({row["threads"] for row in table})
    cuda = machine.get("device") == "cuda"
    if cuda:
        setting = [
            f"- GPU: {machine['gpu']}; host: {machine['cpu']}",
            f"- torch {machine['torch']}, Python {machine['python']}; ops float32, models "
            "under bfloat16 autocast (dtype and batch, 64 by default, in each shape column)",
            *_precision_lines(table),
            "- peak memory: torch.cuda.max_memory_allocated over one call, less the memory "
            "allocated before it (eager implementations only)",
        ]
    else:
        float32_only = _precisions(table) == [""]
        setting = [
            f"- machine: {machine['cpu']}",
            f"- torch {machine['torch']}, Python {machine['python']}, "
            f"{'float32, ' if float32_only else ''}batch in each shape column",
            *_precision_lines(table),
            f"- allocator: {machine.get('allocator', 'not recorded')}",
            "- peak memory: growth of the peak RSS over one call in a fresh process (eager "
            "implementations only; compilation would dominate the compiled ones)",
        ]
    setting += [*_runtime_lines(table), *_peak_lines(machine), *_skipped_lines(skipped),
                "", *targets_section(table, machine)]
    lines = [
        f"# mlpmix {'CUDA' if cuda else 'CPU'} benchmarks ({name})", "",
        f"- date: {machine['date']}",
        f"- threads: {', '.join(str(t) for t in threads)}",
        f"- load average (1, 5, 15 min) before: {machine.get('load before', 'not recorded')}; "
        f"after: {machine.get('load after', 'not recorded')}",
        *setting,
        "", "## Results", "", markdown_table(table), "",
    ]
    if compare:
        lines += ["## torch.utils.benchmark.Compare", "", "```", compare, "```", ""]
    return "\n".join(lines)


def render(table: List[Dict[str, object]], machine: Dict[str, object], out: Path,
           name: str, compare: str = "", skipped: Optional[Dict[str, str]] = None
           ) -> Dict[str, Path]:
    """Writes ``<name>.md`` and ``<name>.png`` of a run's table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{name}.md", "png": out / f"{name}.png"}
    paths["markdown"].write_text(markdown(table, machine, name, compare, skipped))
    chart(table, paths["png"])
    return paths


def write(results: Sequence[Result], out: Path, machine: Dict[str, object], load_before: str,
          load_after: str, name: str = "results",
          skipped: Optional[Dict[str, str]] = None) -> Dict[str, Path]:
    """Writes a run's ``<name>.json`` (machine with its matrix-product peak, load averages,
    the implementations ``skipped`` with why, and the table: all that
    ``python -m benchmarks.report`` needs to render it again), ``.md`` and ``.png``."""
    machine = {**machine, "load before": load_before, "load after": load_after}
    table = rows(results, machine.get("matmul peak"))
    paths = render(table, machine, out, name, str(Compare([r.measurement for r in results])),
                   skipped)
    paths["json"] = out / f"{name}.json"
    paths["json"].write_text(json.dumps(
        {"machine": machine, "skipped": skipped or {}, "rows": table}, indent=1))
    return paths


def rerender(path: Path, out: Optional[Path] = None) -> Dict[str, Path]:
    """Renders a saved ``.json`` of the suite or of ``benchmarks.gemm_floor`` again, into
    ``out`` (default: beside it) under the same stem."""
    from . import gemm_floor  # here, not at the top: gemm_floor imports this module

    data = json.loads(path.read_text())
    out = path.parent if out is None else out
    if data["rows"] and "floor ms" in data["rows"][0]:
        return {"markdown": gemm_floor.write_markdown(data["rows"], data["machine"], out, path.stem)}
    return render(data["rows"], data["machine"], out, path.stem, skipped=data.get("skipped"))


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("json", type=Path, nargs="+",
                        help="saved results (.json of benchmarks.run or benchmarks.gemm_floor)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: beside each file)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    for path in args.json:
        data = json.loads(path.read_text())
        if data["rows"] and "floor ms" not in data["rows"][0]:
            # the verdict on every target, as the report's Targets section states it
            print(f"# {path}", *targets_section(data["rows"], data["machine"])[2:], sep="\n")
        for written in rerender(path, args.out).values():
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
