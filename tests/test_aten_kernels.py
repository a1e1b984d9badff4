"""The ATen compositions that run linear, channel_mlp and reweight_branches on every device
but the CPU (their CompositeExplicitAutograd kernels), checked on the CPU by calling those
kernels directly: each runs over its op's own sample inputs (permuted, sliced, expanded,
empty) against mlpmix.reference, forward and backward, with contiguous results as the ops'
Meta kernels promise. On a GPU tests/test_cuda.py runs the same code through the CUDA key."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor

import test_ops_channel_mlp
import test_ops_linear
import test_ops_reweight_branches
from mlpmix import reference
from op_testing import TOLERANCES

OPS = {
    "linear": (reference.linear, test_ops_linear.sample_inputs),
    "channel_mlp": (reference.channel_mlp, test_ops_channel_mlp.sample_inputs),
    "reweight_branches": (reference.reweight_branches, test_ops_reweight_branches.sample_inputs),
}


def composite(name):
    """torch.ops.mlpmix.<name> run by its CompositeExplicitAutograd kernel."""
    op = getattr(torch.ops.mlpmix, name).default
    return functools.partial(op._op_dk, torch._C.DispatchKey.CompositeExplicitAutograd)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(OPS))
def test_matches_reference_forward_and_backward(name, dtype):
    ref, sample_inputs = OPS[name]
    torch.manual_seed(0)
    for args in sample_inputs(dtype, requires_grad=True):
        tensors = [a for a in args if isinstance(a, Tensor)]
        detached = [a.detach() if isinstance(a, Tensor) else a for a in args]
        out = composite(name)(*detached)
        expected = ref(*args)
        assert out.is_contiguous()
        torch.testing.assert_close(out, expected, **TOLERANCES[dtype])

        grad_out = torch.randn_like(expected)
        # one gradient per argument of the forward (an empty one for a missing bias)
        grads = [g for g, a in zip(composite(name + "_backward")(grad_out, *detached), args)
                 if isinstance(a, Tensor)]
        expected_grads = torch.autograd.grad(expected, tensors, grad_out)
        assert len(grads) == len(expected_grads)
        for got, want, arg in zip(grads, expected_grads, tensors):
            assert got.shape == arg.shape and got.is_contiguous()
            torch.testing.assert_close(got, want, **TOLERANCES[dtype])
