"""The `mlpmix` command and the C++ runner `mlpmix-run`, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.testing import assert_close

import mlpmix
from mlpmix import export
from mlpmix.images import Preprocessing

BIN = Path(sys.executable).parent
DEMO_EPOCHS = 4
DEMO_MODEL = "raftmlp_tiny_digits"  # the demo's exported files: DEMO_MODEL + .pt / .pt2 / .onnx
#: Exported logits against the float32 model's: float32 files equal it, bfloat16 ones are near.
TOLERANCES = {"fp32": {"rtol": 1e-5, "atol": 1e-5}, "bf16": {"rtol": 5e-2, "atol": 1e-2}}


def mlpmix_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlpmix", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def runner(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([mlpmix.runner_path, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The output folder of one short demo run (models, summary, test images), which also
    trains under bf16 autocast."""
    output = tmp_path_factory.mktemp("demo")
    result = mlpmix_cli("demo", "--model", "raftmlp_tiny", "--epochs", DEMO_EPOCHS,
                        "--precision", "bf16", "--output", output)
    assert result.returncode == 0, result.stderr
    return output


def test_info_console_script():
    result = subprocess.run([BIN / "mlpmix", "info"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for fact in (mlpmix.__version__, torch.__version__, mlpmix.cmake_prefix_path,
                 mlpmix.runner_path, "cuda available:"):
        assert fact in result.stdout
    assert Path(mlpmix.runner_path).is_file()


def test_runner_console_script_shows_usage():
    result = subprocess.run([BIN / "mlpmix-run", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: mlpmix-run MODEL INPUT")


@pytest.mark.slow
def test_demo_trains_exports_and_agrees_in_cpp(demo):
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["model"] == "raftmlp_tiny"
    assert len(summary["history"]) == DEMO_EPOCHS
    assert summary["test_accuracy"] > 0.9
    assert summary["train_seconds"] > 0
    assert summary["torchscript_cpp_agreement"] == 1.0
    assert summary["aoti_cpp_agreement"] == 1.0
    assert summary["max_abs_logit_diff"] < 1e-4
    assert (demo / "training_curves.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_demo_runs_onnx_float32_and_int8_in_onnxruntime(demo):
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["onnx_agreement"] == 1.0
    assert summary["onnx_max_abs_logit_diff"] < 1e-4
    assert summary["onnx_int8_agreement"] > 0.95
    assert summary["onnx_int8_test_accuracy"] >= summary["test_accuracy"] - 0.02
    int8, float32 = (demo / f"{DEMO_MODEL}{suffix}" for suffix in (".int8.onnx", ".onnx"))
    assert int8.stat().st_size < float32.stat().st_size


@pytest.mark.slow
def test_demo_under_bf16_autocast_reaches_float32_accuracy(demo):
    """Issue #34's acceptance: within 1 point of float32's test accuracy, same seed."""
    summary = json.loads((demo / "summary.json").read_text())
    assert len(summary["history_bf16"]) == DEMO_EPOCHS
    assert summary["train_seconds_bf16"] > 0
    assert summary["test_accuracy_bf16"] >= summary["test_accuracy"] - 0.01


def write_png(image: torch.Tensor, path: Path) -> None:
    """A (1, 8, 8) digit in [0, 1], light on dark, as a 64x64 dark-on-light picture."""
    pixels = ((1 - image[0]) * 255).round().to(torch.uint8).repeat_interleave(8, 0).repeat_interleave(8, 1)
    Image.frombytes("L", (64, 64), bytes(pixels.flatten().tolist())).save(path)


def top_classes(predict_output: str) -> list:
    """The best class of each image in ``mlpmix predict``'s output."""
    return [int(line.split(": ")[1].split()[0]) for line in predict_output.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pt", ".pt2", ".onnx"])
def test_predict_classifies_pngs_like_the_model(demo, suffix, tmp_path):
    model_file = demo / f"{DEMO_MODEL}{suffix}"
    images = torch.load(demo / "test_images.pt")[:6]
    paths = [tmp_path / f"digit{i}.png" for i in range(len(images))]
    for image, path in zip(images, paths):
        write_png(image, path)
    model, _ = export.load(model_file)
    with torch.inference_mode():
        expected = model(images).argmax(1).tolist()

    result = mlpmix_cli("predict", model_file, *paths)
    assert result.returncode == 0, result.stderr
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [str(p) for p in paths]
    assert top_classes(result.stdout) == expected


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_export_checkpoint_both_formats_runs_in_cpp(precision, tmp_path):
    """Both formats, in either precision, take float32 in the runner and in Python and
    return float32 logits near the float32 model's; the file records its precision, the
    TorchScript file's weights are in it and `mlpmix predict` runs it."""
    torch.manual_seed(0)
    model = mlpmix.create_model("dynamixer_tiny", num_classes=10, in_chans=1).eval()
    torch.save(model.state_dict(), tmp_path / "checkpoint.pth")
    x = torch.rand(4, 1, 8, 8)
    with torch.inference_mode():
        expected = model(x)
    torch.save(x, tmp_path / "x.pt")
    common = ["--model", "dynamixer_tiny", "--num-classes", 10, "--in-chans", 1,
              "--precision", precision]
    for fmt, out, extra in [("torchscript", "m.pt", []), ("aoti", "m.pt2", ["--batch-size", 2])]:
        result = mlpmix_cli("export", tmp_path / "checkpoint.pth", "--format", fmt,
                            "--out", tmp_path / out, *common, *extra)
        assert result.returncode == 0, result.stderr
        result = runner(tmp_path / out, tmp_path / "x.pt", "--output", tmp_path / "y.pt",
                        "--threads", 1)
        assert result.returncode == 0, result.stderr
        got = torch.load(tmp_path / "y.pt")
        assert got.dtype == torch.float32
        assert_close(got, expected, **TOLERANCES[precision])
        exported, metadata = export.load(tmp_path / out)
        assert metadata["precision"] == precision
        with torch.inference_mode():
            assert_close(exported(x[:2]), got[:2], rtol=1e-5, atol=1e-5)

    scripted = torch.jit.load(tmp_path / "m.pt")
    assert {w.dtype for w in scripted.parameters()} == {export.PRECISIONS[precision]}
    pngs = [tmp_path / f"digit{i}.png" for i in range(2)]
    for image, path in zip(x, pngs):
        write_png(image, path)
    images = torch.stack([Preprocessing(size=(8, 8), channels=1)(path) for path in pngs])
    with torch.inference_mode():
        classes = scripted(images).argmax(1).tolist()
    result = mlpmix_cli("predict", tmp_path / "m.pt", *pngs)
    assert result.returncode == 0, result.stderr
    assert top_classes(result.stdout) == classes

    torch.save(x[:3], tmp_path / "x3.pt")
    result = runner(tmp_path / "m.pt2", tmp_path / "x3.pt")
    assert result.returncode == 1
    assert "batches of exactly 2" in result.stderr


def test_export_rejects_unknown_name():
    result = mlpmix_cli("export", "no_such_model", "--format", "torchscript", "--out", "x.pt")
    assert result.returncode != 0
    assert "not a model name" in result.stderr


def test_export_rejects_unknown_precision():
    result = mlpmix_cli("export", "raftmlp_tiny", "--format", "torchscript", "--out", "x.pt",
                        "--precision", "fp16")
    assert result.returncode == 2
    assert "invalid choice: 'fp16'" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_runner_prints_topk_in_chunks(demo, suffix, tmp_path):
    """15 images in chunks of 7: the last chunk is a batch of 1, which an AOTI package's
    input check (on in mlpmix-run) once refused."""
    torch.save(torch.load(demo / "test_images.pt")[:15], tmp_path / "images.pt")
    result = runner(demo / f"{DEMO_MODEL}{suffix}", tmp_path / "images.pt",
                    "--topk", 3, "--batch", 7)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 15
    assert len(lines[0].split("(")) == 4  # "0: c (s) c (s) c (s)"


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_runner_rejects_wrong_input_shape(demo, suffix, tmp_path):
    torch.save(torch.zeros(2, 1, 9, 9), tmp_path / "wrong.pt")
    result = runner(demo / f"{DEMO_MODEL}{suffix}", tmp_path / "wrong.pt")
    assert result.returncode == 1
    assert "expects (N, 1, 8, 8), got (2, 1, 9, 9)" in result.stderr


@pytest.mark.parametrize("missing", ["model", "input"])
def test_runner_reports_missing_files(missing, tmp_path):
    torch.save(torch.zeros(1, 1, 8, 8), tmp_path / "input.pt")
    paths = {"model": tmp_path / "model.pt", "input": tmp_path / "input.pt"}
    paths[missing] = tmp_path / "nope.pt"
    if missing == "input":
        export.save(torch.nn.Flatten(), paths["model"], "torchscript", torch.zeros(1, 1, 8, 8))
    result = runner(paths["model"], paths["input"])
    assert result.returncode == 1
    assert f"cannot read {missing} file" in result.stderr and "nope.pt" in result.stderr


@pytest.mark.parametrize("args", [["only_model.pt"], ["m.pt", "x.pt", "--topk", "0"],
                                  ["m.pt", "x.pt", "--frobnicate"]])
def test_runner_rejects_bad_arguments(args):
    result = runner(*args)
    assert result.returncode == 2
    assert "mlpmix-run:" in result.stderr and "usage:" in result.stderr


def test_runner_missing_from_the_build_is_named(monkeypatch, tmp_path):
    from mlpmix import runner as runner_module
    monkeypatch.setattr(runner_module, "runner_path", str(tmp_path / "mlpmix-run"))
    with pytest.raises(RuntimeError, match="MLPMIX_BUILD_RUNNER=OFF"):
        runner_module.run_file(tmp_path / "m.pt", torch.zeros(1, 1, 8, 8))


def test_bench_forwards_to_a_checkout_suite(tmp_path):
    # An editable install finds the checkout it was imported from (and would run its suite)
    if not (Path(mlpmix.__file__).resolve().parents[2] / "benchmarks" / "run.py").is_file():
        result = mlpmix_cli("bench", "--quick", cwd=tmp_path)
        assert result.returncode == 2
        assert "benchmarks/run.py" in result.stderr

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "run.py").write_text("import sys\nprint('suite', sys.argv[1:])\n")
    result = mlpmix_cli("bench", "--quick", "--op", "dynamixer", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "suite ['--quick', '--op', 'dynamixer']"
