"""The benchmark suite runs one small case end to end and writes its report (no timing is
asserted: the numbers depend on the machine)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import machine, report, run  # noqa: E402


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


def test_machine_names_the_cpu_generation(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 17\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\n"
                       "cpu family\t: 99\nmodel\t\t: 99\nmodel name\t: other\n")
    assert machine.cpu_model(str(cpuinfo)) == "AMD EPYC (family 25 model 17)"


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


def test_gemm_floor_times_the_reference_matrix_products_alone(tmp_path):
    from benchmarks import gemm_floor

    assert gemm_floor.main(["--cases", "dynamixer/dynamixer_s_stage_b_w/forward",
                            "--out", str(tmp_path), "--name", "floor"]) == 0
    (row,) = json.loads((tmp_path / "floor.json").read_text())["rows"]
    # the reference's dynamixer forward: compression, generation and mixing products
    assert row["products"] == 3 and row["distinct"] == 3
    # generation alone: 2 * (B*W*S) * (N*d) * (N*N) multiply-adds' FLOPs
    assert row["GFLOP"] >= 2 * (8 * 16 * 16) * (16 * 2) * (16 * 16) / 1e9
    assert 0 < row["floor ms"] < row["reference ms"]
    assert row["bound"] == pytest.approx(row["reference ms"] / row["floor ms"])
    assert row["mlpmix / floor"] == pytest.approx(row["mlpmix ms"] / row["floor ms"])
    assert "| bound |" in (tmp_path / "floor.md").read_text()


def test_gemm_floor_replays_a_product_with_its_recorded_strides():
    from benchmarks.gemm_floor import ProductRecorder, product_time_ms

    a = torch.randn(6, 4).t()  # (4, 6), transposed strides
    bias = torch.randn(5).expand(4, 5)  # stride 0
    recorder = ProductRecorder()
    with recorder:
        torch.addmm(bias, a, torch.randn(6, 5))
        torch.relu(a)  # not a matrix product: not recorded
    ((key, count),) = recorder.products.items()
    func, args, _ = key
    assert count == 1 and func.overloadpacket is torch.ops.aten.addmm
    assert [spec[:2] for spec in args[:2]] == [((4, 5), (0, 1)), ((4, 6), (1, 4))]
    assert product_time_ms(key, threads=1) > 0


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
