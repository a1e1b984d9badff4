"""The benchmark suite runs one small case end to end and writes its report (no timing is
asserted: the numbers depend on the machine)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import report, run  # noqa: E402


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory needs Linux /proc")
def test_one_case_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    status = run.main([
        "--cases", "cross_scale_embed/raftmlp_s_level_2/forward+backward",
        "--implementations", "reference", "mlpmix", "--threads", "1",
        "--min-run-time", "0.01", "--out", str(tmp_path), "--name", "smoke",
    ])
    assert status == 0
    markdown = (tmp_path / "smoke.md").read_text()
    assert "| " + " | ".join(report.COLUMNS) + " |" in markdown
    assert "torch" in markdown and "cores" in markdown and "threads" in markdown
    assert "- allocator: " in markdown
    rows = json.loads((tmp_path / "smoke.json").read_text())["rows"]
    assert [r["implementation"] for r in rows] == ["reference", "mlpmix"]
    assert all(set(report.COLUMNS) == set(r) for r in rows)
    assert rows[0]["speedup vs eager reference"] == 1.0
    assert all(r["peak memory MiB"] is not None for r in rows)
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")


def test_rounds_interleave_the_implementations_and_merge():
    from benchmarks import timing
    from benchmarks.cases import Case

    calls = []

    def build(impl):
        return lambda: calls.append(impl)

    case = Case(name="toy/forward", label="toy", kind="forward", sub_label="()", build=build)
    measurements = timing.measure(case, ["reference", "mlpmix"], threads=1, min_run_time=0.003,
                                  rounds=3)
    timed = calls[2 * timing.WARMUP_CALLS:]
    switches = sum(a != b for a, b in zip(timed, timed[1:]))
    assert switches == 5  # reference, mlpmix, reference, mlpmix, reference, mlpmix
    assert set(measurements) == {"reference", "mlpmix"}
    assert all(m.description == impl for impl, m in measurements.items())
    assert sum(len(m.raw_times) for m in measurements.values()) >= 6


def test_cuda_setting_runs_models_at_gpu_batch_under_bf16_autocast():
    from benchmarks.cases import all_cases

    cases = {c.name: c for c in all_cases(quick=True, device="cuda")}
    model = cases["dynamixer_s/training"]
    assert model.images == 64 and model.sub_label == "(64x3x224x224) bf16 autocast cuda"
    assert cases["dynamixer/dynamixer_s_stage_a_h/forward"].sub_label.endswith("f32 cuda")
    assert all_cases(quick=True)[0].sub_label.endswith("f32 cpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_a_gpu_is_refused(capsys):
    assert run.main(["--device", "cuda", "--cases", "dynamixer"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_gemm_floor_splits_a_case_into_matrix_products_and_the_rest(tmp_path):
    from benchmarks import gemm_floor

    assert gemm_floor.main(["--cases", "dynamixer/dynamixer_s_stage_b_w/forward",
                            "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "gemm_floor.json").read_text())["rows"]
    assert [r["implementation"] for r in rows] == ["reference", "mlpmix"]
    reference_row, mlpmix_row = rows
    assert 0 < reference_row["GEMM ms"] <= reference_row["total ms"]
    assert reference_row["GEMM GFLOP/s"] > 0
    # mlpmix's GEMMs through at::cpu (all of them where the BLAS path runs, as on Intel
    # CPUs) are out of the profiler's sight: its column may read 0, never more than the total.
    assert 0 <= mlpmix_row["GEMM ms"] <= mlpmix_row["total ms"]
    assert reference_row["bound"] is None and mlpmix_row["bound"] > 0
    assert "| bound |" in (tmp_path / "gemm_floor.md").read_text()


def test_every_op_has_cases_that_match_the_reference():
    """Each op of mlpmix.ops is benchmarked forward and forward+backward, and what the suite
    times for mlpmix computes what it times for the eager reference."""
    import torch

    from benchmarks.cases import all_cases
    from mlpmix import ops

    cases = [c for c in all_cases() if c.label in ops.__all__]
    assert {(c.label, c.kind) for c in cases} == {
        (op, kind) for op in ops.__all__ for kind in ("forward", "forward+backward")}
    for op in ops.__all__:
        case = next(c for c in cases if c.label == op and c.kind == "forward+backward")
        expected, actual = case.build("reference")(), case.build("mlpmix")()
        for e, a in zip(expected, actual, strict=True):
            # float32 sums over up to 25,088 rows: compare in norm, not per element
            assert a.shape == e.shape
            assert (a - e).norm() <= 2e-5 * e.norm() + 1e-6, op
