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
from benchmarks.targets import TARGETS, Target  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


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
    assert "speedup vs reference" in markdown and "(target >= 2.0x)" in markdown  # TARGETS
    # the JSON is the whole record: rendered again, the report is the same but for Compare
    again = report.rerender(tmp_path / "smoke.json", tmp_path / "again")
    before_compare = markdown.split("## torch.utils.benchmark")[0]
    assert again["markdown"].read_text().rstrip() == before_compare.rstrip()
    assert again["png"].read_bytes().startswith(b"\x89PNG")


def test_default_out_is_outside_the_source_tree():
    from benchmarks import gemm_floor

    assert run.parse([]).out == run.DEFAULT_OUT
    assert not run.DEFAULT_OUT.resolve().is_relative_to(REPO)
    assert gemm_floor.DEFAULT_OUT == run.DEFAULT_OUT


def test_committed_results_are_json_records_the_readme_names():
    """One directory per machine type, holding only ``.json`` records (their renders are
    derived), each named in the report."""
    readme = (RESULTS / "README.md").read_text()
    records = [p.relative_to(RESULTS) for p in RESULTS.glob("*/*")]
    assert records and all(p.suffix == ".json" for p in records)
    for path in records:
        assert f"`{path.parent}/`" in readme and f"`{path.name}`" in readme, path


@pytest.mark.parametrize("name", ["zen3/models.json", "zen3/floor.json"])
def test_report_renders_a_committed_json_again(tmp_path, name):
    assert report.main([str(RESULTS / name), "--out", str(tmp_path)]) == 0
    stem = Path(name).stem
    markdown = (tmp_path / f"{stem}.md").read_text()
    if stem == "floor":
        assert "| bound |" in markdown and not (tmp_path / "floor.png").exists()
    else:
        assert "## Targets (2 threads)" in markdown and "(target <= 0.8x): met" in markdown
        assert (tmp_path / f"{stem}.png").read_bytes().startswith(b"\x89PNG")


def _row(impl, median_ms, peak_mib=None):
    return {"case": "toy", "kind": "training", "shape": "(1)", "threads": 2, "implementation": impl,
            "median ms": median_ms, "peak memory MiB": peak_mib}


def test_targets_table_drives_the_verdict():
    table = [_row("reference", 30.0, 100.0), _row("reference+compile", 15.0),
             _row("mlpmix", 20.0, 50.0)]
    (line,) = report.verdicts(table, threads=2, targets=[Target("training", "speedup", 1.25)])
    assert line == "- toy training (1): speedup vs reference 1.50x (target >= 1.25x): met"
    (line,) = report.verdicts(table, threads=2, targets=[
        Target("training", "speedup", 1.0, against="reference+compile"),
        Target("training", "memory", 0.4), Target("training", "speedup", 9.0, cases=("other",))])
    assert line == ("- toy training (1): speedup vs reference+compile 0.75x (target >= 1.0x): NOT met; "
                    "memory vs reference 0.50x (target <= 0.4x): NOT met")
    table[0]["peak memory MiB"] = None
    assert report.verdicts(table, threads=2, targets=[Target("training", "memory", 0.8)]) == [
        "- toy training (1): memory vs reference not measured (target <= 0.8x)"]
    assert report.verdicts(table, threads=1) == []  # no row at 1 thread
    # by default, the table of benchmarks.targets
    (line,) = report.verdicts(table, threads=2)
    assert line.count("(target") == sum(t.kind == "training" for t in TARGETS) == 2


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
    # times are measurements, not invariants: on a loaded machine (tests run two at a time)
    # the products alone can take longer than the whole reference did in its own timing
    assert row["floor ms"] > 0 and row["reference ms"] > 0
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
