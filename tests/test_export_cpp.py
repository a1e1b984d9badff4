"""Modules and models exported in Python (TorchScript, AOTInductor) run in the C++ example
app with the same output."""

from __future__ import annotations

import subprocess

import pytest
import torch
from torch.testing import assert_close

import mlpmix
from conftest import TinyExports, run_example
from mlpmix.nn import DynaMixerBlock, MultiScalePatchEmbedding, RaftBlock

MODULES = {
    "dynamixer_block": (lambda: DynaMixerBlock(16, (4, 6), num_segments=4), (2, 4, 6, 16)),
    "raft_block": (lambda: RaftBlock(16, (4, 6), raft_size=2), (2, 4, 6, 16)),
    "patch_embedding": (lambda: MultiScalePatchEmbedding(3, 16, [2, 4]), (2, 3, 8, 12)),
}


@pytest.mark.parametrize("name", MODULES)
def test_scripted_module_in_cpp(name, example_app, tmp_path):
    torch.manual_seed(0)
    make, shape = MODULES[name]
    module = make().eval()
    mlpmix.export.torchscript(module, tmp_path / "module.pt")
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected = module(x)
    assert torch.equal(run_example(example_app, tmp_path / "module.pt", x, tmp_path), expected)


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_scripted_model_in_cpp(name, example_app, tiny_exports, tmp_path):
    x = torch.randn(3, 1, 8, 8)
    with torch.inference_mode():
        expected = tiny_exports.model(name)(x)
    got = run_example(example_app, tiny_exports.torchscript(name), x, tmp_path)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_bf16_scripted_model_in_cpp(name, example_app, tiny_exports, tmp_path):
    """Saved in bf16, a copy of the model with bfloat16 weights takes and returns float32,
    in C++ as in Python, near the float32 model; the model itself stays float32."""
    model = tiny_exports.model(name)
    path = mlpmix.export.save(model, tmp_path / "model.pt", "torchscript", torch.zeros(1, 1, 8, 8),
                              precision="bf16")
    scripted, metadata = mlpmix.export.load(path)
    assert metadata["precision"] == "bf16"
    assert {p.dtype for p in scripted.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x = torch.randn(3, 1, 8, 8)
    with torch.inference_mode():
        expected, in_python = model(x), scripted(x)
    got = run_example(example_app, path, x, tmp_path)
    assert got.dtype == torch.float32
    assert torch.equal(got, in_python)
    assert_close(got, expected, rtol=5e-2, atol=1e-2)


def test_save_rejects_unknown_precision(tmp_path):
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose from fp32, bf16"):
        mlpmix.export.save(torch.nn.Flatten(), tmp_path / "m.pt", "torchscript",
                           torch.zeros(1, 1, 8, 8), precision="fp16")


@pytest.mark.slow
@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_aoti_package_in_cpp_with_dynamic_batch(name, example_app, tiny_exports, tmp_path,
                                                monkeypatch):
    """With the package's input checks on, as mlpmix-run runs it, at batch sizes on both
    sides of 16 (a bound that a 1x1 convolution's kernel choice once put on the batch)."""
    monkeypatch.setenv("AOTI_RUNTIME_CHECK_INPUTS", "1")
    package = tiny_exports.aoti(name)
    for batch in (5, 1, 40):
        x = torch.randn(batch, 1, 8, 8)
        with torch.inference_mode():
            expected = tiny_exports.model(name)(x)
        assert_close(run_example(example_app, package, x, tmp_path), expected,
                     rtol=1e-5, atol=1e-5)


def test_example_reports_missing_model(example_app, tmp_path):
    torch.save(torch.zeros(1), tmp_path / "in.pt")
    result = subprocess.run([str(example_app), str(tmp_path / "nope.pt"), str(tmp_path / "in.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "error" in result.stderr


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_cpp_app_trains_a_scripted_model(name, cpp_tests, tmp_path):
    """Gradients through the ops' C++ autograd in a process without Python equal Python's."""
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1).train()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    x = torch.randn(3, 1, 8, 8)
    torch.save(x, tmp_path / "input.pt")
    model(x).sum().backward()
    result = subprocess.run([str(cpp_tests / "train_step"), str(tmp_path / "model.pt"),
                             str(tmp_path / "input.pt"), str(tmp_path / "grads.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    grads = torch.load(tmp_path / "grads.pt")
    params = list(model.parameters())
    assert len(grads) == len(params)
    for got, param in zip(grads, params):
        assert_close(got, param.grad, rtol=1e-5, atol=1e-6)
