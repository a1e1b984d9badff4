"""Writes a run's results: the JSON record, and from it a markdown report (the table, with
the targets of ``targets.py`` checked) and a PNG bar chart of the speedups over the eager
reference.

``python -m benchmarks.report FILE.json ... [--out DIR]`` renders the markdown (and, for the
suite's files, the chart) of saved results again: the JSON is the record, the rest is
derived from it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from torch.utils.benchmark import Compare, Measurement

from .cases import Case
from .implementations import IMPLEMENTATIONS, REFERENCE
from .targets import TARGETS, Target

COLUMNS = ["case", "kind", "shape", "threads", "implementation", "median ms", "IQR ms",
           "speedup vs eager reference", "images/s", "peak memory MiB", "memory vs reference"]


@dataclass
class Result:
    case: Case
    impl: str
    threads: int
    measurement: Measurement
    peak_bytes: Optional[int] = None


def _key(r: Result):
    return (r.case.name, r.threads)


def rows(results: Sequence[Result]) -> List[Dict[str, object]]:
    reference = {_key(r): r for r in results if r.impl == REFERENCE}
    out = []
    for r in results:
        ref = reference.get(_key(r))
        median = r.measurement.median
        speedup = ref.measurement.median / median if ref else None
        memory_ratio = (r.peak_bytes / ref.peak_bytes
                        if ref and r.peak_bytes is not None and ref.peak_bytes else None)
        out.append({
            "case": r.case.label, "kind": r.case.kind, "shape": r.case.sub_label,
            "threads": r.threads, "implementation": r.impl,
            "median ms": median * 1e3, "IQR ms": r.measurement.iqr * 1e3,
            "speedup vs eager reference": speedup,
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
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in table]
    return "\n".join(lines)


def _find(table, case, kind, impl, threads, shape=None):
    for row in table:
        if (row["case"], row["kind"], row["implementation"], row["threads"]) == (case, kind, impl, threads) \
                and (shape is None or row["shape"] == shape):
            return row
    return None


def verdicts(table: List[Dict[str, object]], threads: int,
             targets: Sequence[Target] = TARGETS) -> List[str]:
    """One line per mlpmix row at ``threads`` that a target covers: each such target checked
    against the row of the implementation it names (targets whose implementation did not run
    are left out)."""
    lines = []
    for row in table:
        if row["threads"] != threads or row["implementation"] != "mlpmix":
            continue
        checks = []
        for target in filter(lambda t: t.covers(row), targets):
            other = _find(table, row["case"], row["kind"], target.against, threads, row["shape"])
            if other:
                checks.append(target.check(row, other))
        if checks:
            lines.append(f"- {row['case']} {row['kind']} {row['shape']}: " + "; ".join(checks))
    return lines


def chart(table: List[Dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thread_counts = sorted({row["threads"] for row in table})
    impls = [i for i in IMPLEMENTATIONS if i != REFERENCE and any(r["implementation"] == i for r in table)]
    cases = list(dict.fromkeys((r["case"], r["kind"], r["shape"]) for r in table))
    fig, axes = plt.subplots(len(thread_counts), 1, squeeze=False,
                             figsize=(max(8, 0.6 * len(cases) * max(len(impls), 1)), 4.5 * len(thread_counts)))
    width = 0.8 / max(len(impls), 1)
    for ax, threads in zip(axes[:, 0], thread_counts):
        for k, impl in enumerate(impls):
            values = []
            for case, kind, shape in cases:
                row = _find(table, case, kind, impl, threads, shape)
                values.append(row["speedup vs eager reference"] or 0.0 if row else 0.0)
            ax.bar([i + k * width for i in range(len(cases))], values, width, label=impl)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(cases))])
        ax.set_xticklabels([f"{c}\n{k}\n{s.split(' f32')[0].split(' bf16')[0]}" for c, k, s in cases], fontsize=6, rotation=60, ha="right")
        ax.set_ylabel("speedup vs eager reference")
        ax.set_title(f"{threads} thread(s)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(table: List[Dict[str, object]], machine: Dict[str, str], name: str,
             compare: str = "") -> str:
    """The report of a run: its setting, the targets checked, the table and, when given,
    ``torch.utils.benchmark.Compare``'s output."""
    threads = sorted({row["threads"] for row in table})
    cuda = machine.get("device") == "cuda"
    if cuda:
        setting = [
            f"- GPU: {machine['gpu']}; host: {machine['cpu']}",
            f"- torch {machine['torch']}, Python {machine['python']}; ops float32 at batch 64, "
            "models batch 64 under bfloat16 autocast (dtype and batch in each shape column)",
            "- peak memory: torch.cuda.max_memory_allocated over one call, less the memory "
            "allocated before it (eager implementations only)",
            "", "## Targets", "", "- the targets are CPU targets; see the CPU results",
        ]
    else:
        setting = [
            f"- machine: {machine['cpu']}",
            f"- torch {machine['torch']}, Python {machine['python']}, float32, batch 8",
            f"- allocator: {machine.get('allocator', 'not recorded')}",
            "- peak memory: growth of the peak RSS over one call in a fresh process (eager "
            "implementations only; compilation would dominate the compiled ones)",
            "", f"## Targets ({max(threads)} threads)", "",
            *(verdicts(table, max(threads)) or ["- no case of a target in this run"]),
        ]
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


def render(table: List[Dict[str, object]], machine: Dict[str, str], out: Path,
           name: str, compare: str = "") -> Dict[str, Path]:
    """Writes ``<name>.md`` and ``<name>.png`` of a run's table into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{name}.md", "png": out / f"{name}.png"}
    paths["markdown"].write_text(markdown(table, machine, name, compare))
    chart(table, paths["png"])
    return paths


def write(results: Sequence[Result], out: Path, machine: Dict[str, str], load_before: str,
          load_after: str, name: str = "results") -> Dict[str, Path]:
    """Writes a run's ``<name>.json`` (machine, load averages and the table: all that
    ``python -m benchmarks.report`` needs to render it again), ``.md`` and ``.png``."""
    machine = {**machine, "load before": load_before, "load after": load_after}
    table = rows(results)
    paths = render(table, machine, out, name, str(Compare([r.measurement for r in results])))
    paths["json"] = out / f"{name}.json"
    paths["json"].write_text(json.dumps({"machine": machine, "rows": table}, indent=1))
    return paths


def rerender(path: Path, out: Optional[Path] = None) -> Dict[str, Path]:
    """Renders a saved ``.json`` of the suite or of ``benchmarks.gemm_floor`` again, into
    ``out`` (default: beside it) under the same stem."""
    from . import gemm_floor  # here, not at the top: gemm_floor imports this module

    data = json.loads(path.read_text())
    out = path.parent if out is None else out
    if data["rows"] and "floor ms" in data["rows"][0]:
        return {"markdown": gemm_floor.write_markdown(data["rows"], data["machine"], out, path.stem)}
    return render(data["rows"], data["machine"], out, path.stem)


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
        for written in rerender(path, args.out).values():
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
