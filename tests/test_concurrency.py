"""Concurrent inference: one loaded model run from 8 C++ threads at once gives the
single-threaded output every time; Python threads calling the ops agree too."""

from __future__ import annotations

import subprocess
import threading

import pytest
import torch

from conftest import TinyExports
from mlpmix import ops

THREADS, ITERATIONS = 8, 200


def run_concurrent(cpp_tests, model_path, tmp_path):
    torch.save(torch.randn(4, 1, 8, 8), tmp_path / "input.pt")
    result = subprocess.run(
        [str(cpp_tests / "concurrent_inference"), str(model_path), str(tmp_path / "input.pt"),
         str(THREADS), str(ITERATIONS)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok {THREADS * ITERATIONS} runs")


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_torchscript_model_from_8_threads(name, cpp_tests, tiny_exports, tmp_path):
    run_concurrent(cpp_tests, tiny_exports.torchscript(name), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_aoti_package_from_8_threads(name, cpp_tests, tiny_exports, tmp_path):
    run_concurrent(cpp_tests, tiny_exports.aoti(name), tmp_path)


def test_python_threads_get_identical_results():
    torch.manual_seed(0)
    x = torch.randn(8, 8, 8, 16, requires_grad=True)
    weights = [torch.randn(8, 16), torch.randn(8), torch.randn(64, 16), torch.randn(64)]

    def run():
        out = ops.dynamixer(x, *weights, 4, 1)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        return out.detach(), grad

    expected = run()
    results = [None] * 8

    def worker(i):
        results[i] = [run() for _ in range(20)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for per_thread in results:
        for out, grad in per_thread:
            assert torch.equal(out, expected[0]) and torch.equal(grad, expected[1])
