"""MLPMIX_CPU_GEMM (cpp/common/gemm_cpu) picks the GEMM library of the CPU kernels: the
float32 accuracy tests of linear and channel_mlp pass under each choice, ONEDNN_VERBOSE shows
oneDNN running exactly when chosen (and this CPU runs its float32 matmul), and a bad value is
a clear error. So both GEMM paths are tested on every machine, Intel CPUs (where auto takes
ATen's BLAS) included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
ACCURACY_TESTS = [
    "test_ops_linear.py::test_float32_model_sizes_as_accurate_as_the_reference",
    "test_ops_channel_mlp.py::test_matches_reference_over_many_tokens",
]


def onednn_runs_float32() -> bool:
    return torch.backends.mkldnn.is_available() and \
        torch.backends.cpu.get_cpu_capability() == "AVX512"


def run_with(choice: str, *command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLPMIX_CPU_GEMM=choice, ONEDNN_VERBOSE="1")
    return subprocess.run([sys.executable, *command], cwd=TESTS, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("choice", ["onednn", "blas", "auto"])
def test_each_choice_is_accurate_and_runs_its_library(choice):
    result = run_with(choice, "-m", "pytest", "-n", "0", "-q", "-s", "-p", "no:cacheprovider",
                      *ACCURACY_TESTS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # the matrix products only (the reference's GELU runs oneDNN's eltwise either way)
    product = re.compile(r"onednn_verbose.*,exec,cpu,(matmul|inner_product),")
    ran_onednn = any(product.search(line) for line in result.stdout.splitlines())
    if choice == "onednn":
        assert ran_onednn == onednn_runs_float32()
    elif choice == "blas":
        assert not ran_onednn


def test_a_bad_choice_is_a_clear_error():
    result = run_with("fast", "-c", "import torch, mlpmix\n"
                      "torch.ops.mlpmix.linear(torch.randn(64, 64), torch.randn(64, 64), None)")
    assert result.returncode != 0
    assert "MLPMIX_CPU_GEMM must be auto, onednn or blas, got 'fast'" in result.stderr
