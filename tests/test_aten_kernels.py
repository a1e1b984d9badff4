"""The ATen compositions that the CUDA kernels of linear, channel_mlp and reweight_branches
run (with the input's device made current), checked on the CPU: tests/cpp/aten_kernels.cpp
registers them as torch.ops.mlpmix_aten.*, and each runs over its op's own sample inputs
(permuted, sliced, expanded, empty) against mlpmix.reference, forward and backward, with
contiguous results as the ops' Meta kernels promise. On a GPU tests/test_cuda.py runs the
same code through the CUDA kernels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch.utils import cpp_extension

import mlpmix
import test_ops_channel_mlp
import test_ops_linear
import test_ops_reweight_branches
from conftest import REPO
from mlpmix import reference
from op_testing import TOLERANCES

pytestmark = pytest.mark.slow  # compiles an extension against torch (about a minute)

OPS = {
    "linear": (reference.linear, test_ops_linear.sample_inputs),
    "channel_mlp": (reference.channel_mlp, test_ops_channel_mlp.sample_inputs),
    "reweight_branches": (reference.reweight_branches, test_ops_reweight_branches.sample_inputs),
}


@pytest.fixture(scope="module")
def aten(tmp_path_factory):
    library_dir = str(Path(mlpmix.library_path).parent)
    cpp_extension.load(
        name="mlpmix_aten_kernels",
        sources=[str(REPO / "tests" / "cpp" / "aten_kernels.cpp")],
        extra_include_paths=[str(REPO / "cpp")],
        extra_cflags=["-O1", "-std=c++20"],
        extra_ldflags=[mlpmix.library_path, f"-Wl,-rpath,{library_dir}"],
        build_directory=str(tmp_path_factory.mktemp("aten_kernels")),
        is_python_module=False,
    )
    return torch.ops.mlpmix_aten


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(OPS))
def test_matches_reference_forward_and_backward(aten, name, dtype):
    ref, sample_inputs = OPS[name]
    torch.manual_seed(0)
    for args in sample_inputs(dtype, requires_grad=True):
        tensors = [a for a in args if isinstance(a, Tensor)]
        detached = [a.detach() if isinstance(a, Tensor) else a for a in args]
        out = getattr(aten, name)(*detached)
        expected = ref(*args)
        assert out.is_contiguous()
        torch.testing.assert_close(out, expected, **TOLERANCES[dtype])

        grad_out = torch.randn_like(expected)
        # one gradient per argument of the forward (an empty one for a missing bias)
        grads = [g for g, a in zip(getattr(aten, name + "_backward")(grad_out, *detached), args)
                 if isinstance(a, Tensor)]
        expected_grads = torch.autograd.grad(expected, tensors, grad_out)
        assert len(grads) == len(expected_grads)
        for got, want, arg in zip(grads, expected_grads, tensors):
            assert got.shape == arg.shape and got.is_contiguous()
            torch.testing.assert_close(got, want, **TOLERANCES[dtype])
