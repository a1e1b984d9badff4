"""The benchmark suite runs one small case end to end and writes its report, its float32
and bfloat16 columns, the deployment runtimes and the fraction of the machine's peak alike
(no timing is asserted: the numbers depend on the machine)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import mlpmix

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import machine, peak, report, run  # noqa: E402
from benchmarks.targets import BF16_TARGETS, TARGETS, Target  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


@pytest.fixture
def quick_peak(monkeypatch):
    """The machine's peak measured briefly: the tests check the record, not the machine."""
    monkeypatch.setattr(peak, "RUN_TIME", 0.05)


def assert_gflops_of_peak(record, row):
    """A row's GFLOP/s is its FLOPs over its median, a fraction of the run's peak in its
    precision (bfloat16 for the bf16 ones, where the CPU has it)."""
    assert row["GFLOP/s"] == pytest.approx(row["GFLOP"] / (row["median ms"] / 1e3))
    products = torch.bfloat16 if "+bf16" in row["implementation"] else torch.float32
    machine_peak = peak.of(record["machine"]["matmul peak"], products, row["threads"])
    assert machine_peak > 0
    assert row["fraction of peak"] == pytest.approx(row["GFLOP/s"] / machine_peak)
    assert row["fraction of peak"] > 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak memory needs Linux /proc")
def test_one_case_writes_the_report(tmp_path, monkeypatch, quick_peak):
    monkeypatch.chdir(REPO)
    impls = ["reference", "mlpmix", "reference+bf16", "mlpmix+bf16"]
    status = run.main([
        "--cases", "cross_scale_embed/raftmlp_s_level_2/forward+backward",
        "--implementations", *impls, "--threads", "1",
        "--min-run-time", "0.01", "--out", str(tmp_path), "--name", "smoke",
    ])
    assert status == 0
    markdown = (tmp_path / "smoke.md").read_text()
    assert "| " + " | ".join(report.COLUMNS) + " |" in markdown
    assert "torch" in markdown and "cores" in markdown and "threads" in markdown
    assert "- allocator: " in markdown
    record = json.loads((tmp_path / "smoke.json").read_text())
    rows = {r["implementation"]: r for r in record["rows"]}
    assert [r["implementation"] for r in record["rows"]] == impls
    assert all(set(report.COLUMNS) == set(r) for r in rows.values())
    # each row against the eager reference in its precision, and against float32's
    assert rows["reference"]["speedup vs eager reference"] == 1.0
    assert rows["reference+bf16"]["speedup vs eager reference"] == 1.0
    for impl, baseline in (("mlpmix", "reference"), ("mlpmix+bf16", "reference+bf16")):
        assert rows[impl]["speedup vs eager reference"] == pytest.approx(
            rows[baseline]["median ms"] / rows[impl]["median ms"])
        assert rows[impl]["memory vs reference"] == pytest.approx(
            rows[impl]["peak memory MiB"] / rows[baseline]["peak memory MiB"])
        assert rows[impl]["speedup vs f32 reference"] == pytest.approx(
            rows["reference"]["median ms"] / rows[impl]["median ms"])
    assert all(r["peak memory MiB"] is not None for r in rows.values())
    assert isinstance(record["machine"]["native bf16"], bool)  # the record says the CPU's bf16
    # the machine's peak, in bfloat16 too where the CPU has it natively
    peaks = record["machine"]["matmul peak"]["GFLOP/s"]
    assert peaks["float32"]["1"] > 0
    assert ("bfloat16" in peaks) == record["machine"]["native bf16"]
    # forward and backward counted: the weight's and the input's gradient products beside
    # the forward's, (B*28*28 tokens) x (64 channels * (2*2 + 4*4) window) x 128
    assert all(r["GFLOP"] == pytest.approx(3 * 2 * (8 * 28 * 28) * (64 * 20) * 128 / 1e9)
               for r in rows.values())
    for row in rows.values():
        assert_gflops_of_peak(record, row)
    assert "- matrix-product peak (fastest block of blocked_autorange): torch.mm 2048x2048: " \
        in markdown
    assert "- native bf16: " in markdown
    assert (tmp_path / "smoke.png").read_bytes().startswith(b"\x89PNG")
    assert "speedup vs reference" in markdown and "(target >= 2.0x)" in markdown  # TARGETS
    assert "mlpmix+bf16: speedup vs reference+bf16" in markdown and "(target >= 1.5x)" in markdown
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
def test_report_renders_a_committed_json_again(tmp_path, name, capsys):
    """Results saved before the bf16 columns render as they are, and the report prints the
    verdict per target."""
    assert report.main([str(RESULTS / name), "--out", str(tmp_path)]) == 0
    stem = Path(name).stem
    markdown = (tmp_path / f"{stem}.md").read_text()
    printed = capsys.readouterr().out
    if stem == "floor":
        assert "| bound |" in markdown and not (tmp_path / "floor.png").exists()
    else:
        assert "## Targets (2 threads)" in markdown and "(target <= 0.8x): met" in markdown
        assert (tmp_path / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert "- mlpmix training memory vs reference <= 0.8x: met (6 of 6 cases" in printed
        assert "- native bf16" not in markdown  # float32 rows only: no word of bf16


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
    assert line.count("(target") == sum(t.kind == "training" and t.impl == "mlpmix"
                                        for t in TARGETS) == 2


def test_bf16_targets_against_the_reference_under_autocast_and_native_bf16():
    table = [_row("reference", 60.0, 200.0), _row("reference+bf16", 30.0, 100.0),
             _row("mlpmix", 40.0, 90.0), _row("mlpmix+bf16", 20.0, 70.0)]
    assert {(t.impl, t.against) for t in BF16_TARGETS if t.kind == "training"} == {
        ("mlpmix+bf16", "reference+bf16")}
    # the float32 line first, then mlpmix+bf16's, naming it
    f32, bf16 = report.verdicts(table, threads=2, native_bf16=True)
    assert f32.startswith("- toy training (1): ")
    assert bf16 == ("- toy training (1), mlpmix+bf16: speedup vs reference+bf16 1.50x "
                    "(target >= 1.25x): met; memory vs reference+bf16 0.70x (target <= 0.8x): met")
    # without native bf16 (or not recorded, as in older results) the ratios stay, as they are
    _, bf16 = report.verdicts(table, threads=2, native_bf16=False)
    assert bf16.count("1.50x (target >= 1.25x): not applicable (no native bf16)") == 1
    _, bf16 = report.verdicts(table, threads=2)
    assert "not applicable (native bf16 not recorded)" in bf16
    # the verdict per target: every case covered, the worst named
    table.append({**_row("mlpmix+bf16", 28.0, 70.0), "case": "toy2"})
    table.append({**_row("reference+bf16", 30.0, 100.0), "case": "toy2"})
    lines = report.summary(table, threads=2, targets=BF16_TARGETS, native_bf16=True)
    assert lines == [
        "- mlpmix+bf16 training speedup vs reference+bf16 >= 1.25x: NOT met (1 of 2 cases meet "
        "it; worst 1.07x: toy2 training (1))",
        "- mlpmix+bf16 training memory vs reference+bf16 <= 0.8x: met (2 of 2 cases meet it; "
        "worst 0.70x: toy training (1))"]
    assert "not applicable (no native bf16) (1 of 2" in report.summary(
        table, threads=2, targets=BF16_TARGETS, native_bf16=False)[0]


def test_implementations_are_data(monkeypatch):
    from benchmarks import implementations as impl

    for name in impl.KNOWN:
        assert impl.parse(name).name == name
    assert set(impl.IMPLEMENTATIONS) <= set(impl.KNOWN) and impl.defaults("cuda") == impl.FLOAT32
    assert impl.order(["mlpmix+bf16w", "mlpmix", "reference+bf16"]) == [
        "mlpmix", "reference+bf16", "mlpmix+bf16w"]
    assert [impl.baseline(n) for n in ("mlpmix+compile", "reference+bf16+compile", "mlpmix+bf16w")] \
        == ["reference", "reference+bf16", "reference+bf16w"]
    assert impl.applies("mlpmix+bf16w", "inference") and not impl.applies("mlpmix+bf16w", "training")
    assert impl.applies("mlpmix+bf16", "forward+backward")
    for bad in ("mlpmix+compile+bf16", "mlpmix+", "eager", "mlpmix+fp8", "mlpmix+int8",
                "aoti+compile", "openvino+int8", "onnxruntime+bf16"):
        with pytest.raises(ValueError):
            impl.parse(bad)
    # the runtimes: model inference only, float32 (onnxruntime: int8 too) against the
    # float32 eager reference
    from benchmarks.runtimes import RUNTIMES

    assert set(RUNTIMES) == {n for n in impl.KNOWN if impl.runtime(n)} == {
        "aoti", "onnxruntime", "onnxruntime+int8", "openvino"}
    assert all(impl.applies(n, "inference") and not impl.applies(n, "forward") for n in RUNTIMES)
    assert impl.baseline("onnxruntime+int8") == "reference"
    with pytest.raises(SystemExit):
        run.parse(["--implementations", "mlpmix+fp8"])
    # +bf16: the implementation switch and CPU bf16 autocast; +compile: torch.compile of it
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn: compiled.append(fn) or fn)
    seen = impl.prepare(lambda: (mlpmix.implementation.current(), torch.is_autocast_enabled("cpu"),
                                 torch.get_autocast_dtype("cpu")), "mlpmix+bf16+compile")()
    assert seen == ("fused", True, torch.bfloat16) and len(compiled) == 1
    # float32: no autocast context, not even a disabled one that would turn off the caller's
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert impl.prepare(lambda: torch.is_autocast_enabled("cpu"), "reference")()


def test_bf16_cases_run_in_their_precision():
    """What the suite times: under autocast the ops' results in bf16 from float32 inputs,
    with bf16 weights the inputs cast; close to float32's."""
    from benchmarks.cases import find

    case = find("cross_scale_embed/raftmlp_s_level_2/forward")
    expected = case.build("reference")()
    for name in ("reference+bf16", "mlpmix+bf16", "mlpmix+bf16w"):
        actual = case.build(name)()
        assert actual.dtype == torch.bfloat16 and actual.shape == expected.shape, name
        assert (actual.float() - expected).norm() <= 2e-2 * expected.norm(), name


def test_bf16_weights_column_is_inference_only(tmp_path, quick_peak):
    """One run with an op and a model: the bf16-weights columns only on the model's
    inference (at batch 1 here, to keep the test short), with their targets."""
    impls = ["reference", "reference+bf16", "mlpmix+bf16", "reference+bf16w", "mlpmix+bf16w"]
    status = run.main([
        "--cases", "cross_scale_embed/raftmlp_s_level_2/forward", "raftmlp_s/inference",
        "--implementations", *impls, "--threads", "1", "--batch", "1", "--min-run-time", "0.01",
        "--out", str(tmp_path), "--name", "bf16w",
    ])
    assert status == 0
    record = json.loads((tmp_path / "bf16w.json").read_text())
    by_kind = {}
    for row in record["rows"]:
        by_kind.setdefault(row["kind"], {})[row["implementation"]] = row
    assert list(by_kind["forward"]) == impls[:3] and list(by_kind["inference"]) == impls
    inference = by_kind["inference"]
    assert inference["mlpmix+bf16w"]["speedup vs eager reference"] == pytest.approx(
        inference["reference+bf16w"]["median ms"] / inference["mlpmix+bf16w"]["median ms"])
    assert inference["mlpmix+bf16w"]["images/s"] is not None
    markdown = (tmp_path / "bf16w.md").read_text()
    assert "raftmlp_s inference (1x3x224x224) f32 cpu, mlpmix+bf16w: speedup vs reference" \
        in markdown and "(target >= 2.2x)" in markdown
    assert "mlpmix+bf16: speedup vs reference+bf16" in markdown and "(target >= 1.3x)" in markdown


def test_runtimes_time_the_exported_model_on_the_run_threads(tmp_path, monkeypatch, quick_peak):
    """A tiny model's inference through onnxruntime (float32 and int8) and OpenVINO beside
    eager PyTorch, at two batch sizes from one export: each runtime on the run's threads
    (OpenVINO in float32), computing the model's logits; a runtime whose packages are
    missing is left out with the reason in the report (AOTI here, which would compile)."""
    import dataclasses

    import onnxruntime
    import openvino

    from benchmarks import cases, implementations

    monkeypatch.setattr(cases, "MODELS", ("raftmlp_tiny",))
    monkeypatch.setitem(implementations.BACKENDS, "aoti", dataclasses.replace(
        implementations.BACKENDS["aoti"], packages=("mlpmix_absent_package",)))
    configured = []

    class Session(onnxruntime.InferenceSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            configured.append(("onnxruntime", self.get_session_options().intra_op_num_threads))

    class Core(openvino.Core):
        def compile_model(self, *args, **kwargs):
            compiled = super().compile_model(*args, **kwargs)
            configured.append(("openvino", compiled.get_property("INFERENCE_NUM_THREADS"),
                               str(compiled.get_property("INFERENCE_PRECISION_HINT"))))
            return compiled

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(openvino, "Core", Core)
    impls = ["reference", "mlpmix", "aoti", "onnxruntime", "onnxruntime+int8", "openvino"]
    status = run.main(["--cases", "raftmlp_tiny/inference", "--implementations", *impls,
                       "--threads", "1", "--batch", "1", "2", "--min-run-time", "0.01",
                       "--out", str(tmp_path), "--name", "runtimes"])
    assert status == 0
    # 1 thread where each runtime would take both cores by default
    per_batch = [("onnxruntime", 1), ("onnxruntime", 1), ("openvino", 1, "<Type: 'float32'>")]
    assert configured == per_batch * 2
    record = json.loads((tmp_path / "runtimes.json").read_text())
    assert list(record["skipped"]) == ["aoti"]
    assert "mlpmix_absent_package, not installed" in record["skipped"]["aoti"]
    markdown = (tmp_path / "runtimes.md").read_text()
    assert "- not run: aoti (needs mlpmix_absent_package, not installed" in markdown
    assert "openvino: the ONNX file in OpenVINO's CPU plugin, INFERENCE_PRECISION_HINT f32" \
        in markdown
    with torch.device("meta"):
        model = mlpmix.create_model("raftmlp_tiny")
    for batch in (1, 2):
        rows = {r["implementation"]: r for r in record["rows"]
                if r["shape"].startswith(f"({batch}x")}
        assert list(rows) == [i for i in impls if i != "aoti"]
        for row in rows.values():
            assert row["GFLOP"] * 1e9 == 2 * mlpmix.flops.count_macs(model, batch=batch)
            assert_gflops_of_peak(record, row)
            # a tiny model is far from the peak: a bound that holds on a loaded machine
            # (the op of test_one_case runs at the peak, where noise can take it past 1)
            assert row["fraction of peak"] <= 1.5, row
        assert rows["onnxruntime+int8"]["speedup vs eager reference"] == pytest.approx(
            rows["reference"]["median ms"] / rows["onnxruntime+int8"]["median ms"])
    # what they time is the model: the eager reference's logits (int8: within its rounding,
    # 2% of the largest logit here)
    case = cases.find("raftmlp_tiny/inference/batch2", batch=2)
    expected = case.build("reference")()
    for impl, tolerance in (("onnxruntime", 1e-4), ("openvino", 1e-4), ("onnxruntime+int8", 0.1)):
        logits = case.build(impl)()
        assert (logits - expected).abs().max() <= tolerance * expected.abs().max(), impl


def test_machine_names_the_cpu_generation(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                       "model\t\t: 17\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\n"
                       "cpu family\t: 99\nmodel\t\t: 99\nmodel name\t: other\n")
    assert machine.cpu_model(str(cpuinfo)) == "AMD EPYC (family 25 model 17)"


@pytest.mark.parametrize("flags, native", [
    ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n", True),
    ("flags\t\t: fpu avx2 fma\n", False),
    ("Features\t: fp asimd sve bf16 i8mm\n", True),  # Arm
    ("processor\t: 0\n", None),
])
def test_machine_says_whether_the_cpu_has_native_bf16(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\n" + flags)
    assert machine.native_bf16(str(cpuinfo)) is native
    assert machine.native_bf16(str(tmp_path / "missing")) is None


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
