"""Writes the results: a markdown table (with the targets of issue 7 checked), a JSON copy
and a PNG bar chart of the speedups over the eager reference."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from torch.utils.benchmark import Compare, Measurement

from .cases import Case
from .implementations import IMPLEMENTATIONS, REFERENCE

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


def markdown_table(table: List[Dict[str, object]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for row in table]
    return "\n".join(lines)


def _find(table, case, kind, impl, threads, shape=None):
    for row in table:
        if (row["case"], row["kind"], row["implementation"], row["threads"]) == (case, kind, impl, threads) \
                and (shape is None or row["shape"] == shape):
            return row
    return None


def targets(table: List[Dict[str, object]], threads: int) -> List[str]:
    """Issue 7's targets (float32, all cores, ratios to the eager reference), checked."""
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for row in table:
        if row["threads"] != threads or row["implementation"] != "mlpmix":
            continue
        speedup = row["speedup vs eager reference"]
        if speedup is None:
            continue
        if row["kind"] == "forward+backward":
            compiled = _find(table, row["case"], row["kind"], "reference+compile", threads, row["shape"])
            vs_compiled = compiled["median ms"] / row["median ms"] if compiled else None
            ok = speedup >= 2.0 and (vs_compiled is None or vs_compiled >= 1.0)
            lines.append(f"- {row['case']} forward+backward {row['shape']}: {speedup:.2f}x the eager "
                         f"reference (target >= 2.0x), {cell(vs_compiled)}x its torch.compile "
                         f"(target >= 1.0x): {verdict(ok)}")
        elif row["kind"] == "inference" and row["case"] in ("dynamixer_s", "raftmlp_s"):
            lines.append(f"- {row['case']} inference: {speedup:.2f}x (target >= 1.3x): "
                         f"{verdict(speedup >= 1.3)}")
        elif row["kind"] == "training":
            memory = row["memory vs reference"]
            ok = speedup >= 1.25 and memory is not None and memory <= 0.8
            lines.append(f"- {row['case']} training step: {speedup:.2f}x (target >= 1.25x), peak "
                         f"memory {cell(memory)}x the reference (target <= 0.8x): {verdict(ok)}")
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


def write(results: Sequence[Result], out: Path, machine: Dict[str, str], threads: Sequence[int],
          load_before: str, load_after: str, name: str = "results") -> Dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = rows(results)
    paths = {"markdown": out / f"{name}.md", "json": out / f"{name}.json", "png": out / f"{name}.png"}
    cuda = machine.get("device") == "cuda"
    if cuda:
        setting = [
            f"- GPU: {machine['gpu']}; host: {machine['cpu']}",
            f"- torch {machine['torch']}, Python {machine['python']}; ops float32 at batch 64, "
            "models batch 64 under bfloat16 autocast (dtype and batch in each shape column)",
            "- peak memory: torch.cuda.max_memory_allocated over one call, less the memory "
            "allocated before it (eager implementations only)",
            "", "## Targets", "", "- issue 7's targets are CPU targets; see the CPU results",
        ]
    else:
        setting = [
            f"- machine: {machine['cpu']}",
            f"- torch {machine['torch']}, Python {machine['python']}, float32, batch 8",
            f"- allocator: {machine.get('allocator', 'not recorded')}",
            "- peak memory: growth of the peak RSS over one call in a fresh process (eager "
            "implementations only; compilation would dominate the compiled ones)",
            "", f"## Targets ({max(threads)} threads)", "",
            *(targets(table, max(threads)) or ["- no case of a target in this run"]),
        ]
    header = [
        f"# mlpmix {'CUDA' if cuda else 'CPU'} benchmarks ({name})", "",
        f"- date: {machine['date']}",
        f"- threads: {', '.join(str(t) for t in threads)}",
        f"- load average (1, 5, 15 min) before: {load_before}; after: {load_after}",
        *setting,
        "", "## Results", "", markdown_table(table), "",
        "## torch.utils.benchmark.Compare", "", "```",
        str(Compare([r.measurement for r in results])), "```", "",
    ]
    paths["markdown"].write_text("\n".join(header))
    paths["json"].write_text(json.dumps({"machine": machine, "rows": table}, indent=1))
    chart(table, paths["png"])
    return paths
