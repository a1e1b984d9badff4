"""mlpmix.ops.reweight_branches (DynaMixer's re-weighting of its three branches) against
mlpmix.reference."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mlpmix import ops, reference
from op_testing import (
    assert_compiles,
    assert_exports_with_dynamic_batch,
    assert_matches_reference,
    assert_no_double_backward,
    assert_rejected,
    assert_rejected_by_every_kernel,
    assert_script_round_trip,
    check,
    leaf,
)

OP = "reweight_branches"
DTYPES = [torch.float64, torch.float32]


def make_branch(shape: tuple[int, ...], layout: str, dtype: torch.dtype) -> Tensor:
    """``(B, ..., D)`` with the given memory layout."""
    if layout == "contiguous":
        return torch.randn(shape, dtype=dtype)
    if layout == "transposed":  # channels strided, as a (B, D, H, W) tensor permuted
        return torch.randn(shape[0], shape[-1], *shape[1:-1], dtype=dtype).movedim(1, -1)
    if layout == "sliced":  # channels padded
        return torch.randn(*shape[:-1], shape[-1] + 3, dtype=dtype)[..., 1:-2]
    if layout == "expanded":  # stride 0 over the first token axis
        return torch.randn(shape[0], 1, *shape[2:], dtype=dtype).expand(shape)
    raise ValueError(layout)


def make_args(shape, dtype, layouts=("contiguous",) * 3, hidden=None, requires_grad=False):
    channels = shape[-1]
    hidden = hidden or max(channels // 4, 1)
    branches = [leaf(make_branch(shape, layout, dtype), requires_grad) for layout in layouts]
    params = [torch.randn(hidden, channels, dtype=dtype) / max(channels, 1) ** 0.5,
              torch.randn(hidden, dtype=dtype),
              torch.randn(3 * channels, hidden, dtype=dtype) / hidden ** 0.5,
              torch.randn(3 * channels, dtype=dtype)]
    return (*branches, *(leaf(p, requires_grad) for p in params))


SAMPLE_CASES = [
    # shape (B, ..., D), layouts of h, w, c, hidden
    ((2, 4, 3, 16), ("contiguous",) * 3, None),
    ((3, 5, 4, 20), ("transposed", "sliced", "contiguous"), 5),  # D past the vector width
    ((2, 3, 70), ("contiguous", "expanded", "transposed"), 7),  # rank 3, two channel blocks
    ((1, 2, 2, 3), ("sliced",) * 3, 1),  # D below the vector width
    ((4, 9), ("contiguous",) * 3, 2),  # rank 2: one token per sample
    ((0, 3, 3, 8), ("contiguous",) * 3, None),  # no samples
]


def sample_inputs(dtype: torch.dtype, requires_grad: bool = False):
    for shape, layouts, hidden in SAMPLE_CASES:
        yield make_args(shape, dtype, layouts, hidden, requires_grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_and_its_gradients(dtype):
    torch.manual_seed(0)
    for args in sample_inputs(dtype, requires_grad=True):
        assert_matches_reference(ops.reweight_branches, reference.reweight_branches, args)


def test_float32_model_sizes_as_accurate_as_the_reference():
    """DynaMixer-S stage B, (B, 16, 16, 384): output and every gradient judged against the
    float64 result as flash-attention judges low precision."""
    torch.manual_seed(0)
    leaves = list(make_args((2, 16, 16, 384), torch.float64, requires_grad=True))
    check(ops.reweight_branches, reference.reweight_branches, leaves, lambda t: t, torch.float32)


def test_weights_are_a_softmax_over_the_branches():
    """Equal branches come back unchanged, whatever the MLP (the weights sum to one)."""
    torch.manual_seed(0)
    h, _, _, *params = make_args((2, 4, 4, 24), torch.float64)
    torch.testing.assert_close(ops.reweight_branches(h, h, h, *params), h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_and_gradients_are_contiguous(dtype):
    for args in sample_inputs(dtype):
        h = args[0]
        out = ops.reweight_branches(*args)
        assert out.shape == h.shape and out.is_contiguous()
        grads = torch.ops.mlpmix.reweight_branches_backward(torch.ones_like(out), *args)
        for grad, arg in zip(grads, args):
            assert grad.shape == arg.shape and grad.is_contiguous()


def test_gradcheck():
    for args in sample_inputs(torch.float64, requires_grad=True):
        # gradcheck perturbs elements one by one: no overlapping memory
        args = [leaf(a.contiguous(), True) if 0 in a.stride() else a for a in args]
        assert torch.autograd.gradcheck(ops.reweight_branches, tuple(args), fast_mode=True)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    for args in sample_inputs(torch.float64, requires_grad):
        torch.library.opcheck(torch.ops.mlpmix.reweight_branches.default, args)


def _bad_inputs():
    """(argument named in the error, position, replacement) on valid (2, 3, 4, 8), hidden 2."""
    h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias = make_args((2, 3, 4, 8), torch.float32)
    return [
        ("h", 0, torch.randn(8)),
        ("h", 0, h.to(torch.int64)),
        ("h", 0, torch.randn(2, 0, 4, 8)),  # no tokens
        ("w", 1, w[:, :-1]),
        ("w", 1, w.double()),
        ("c", 2, c.to("meta")),
        ("c", 2, c[..., :-1]),
        ("fc1_weight", 3, fc1_weight[:, :-1]),
        ("fc1_weight", 3, fc1_weight[0]),
        ("fc1_bias", 4, fc1_bias[:-1]),
        ("fc2_weight", 5, fc2_weight[:-1]),
        ("fc2_weight", 5, fc2_weight.double()),
        ("fc2_bias", 6, fc2_bias.reshape(1, -1)),
    ]


@pytest.mark.parametrize("argument, position, replacement", _bad_inputs())
def test_bad_input_is_rejected_naming_it(argument, position, replacement):
    args = list(make_args((2, 3, 4, 8), torch.float32))
    args[position] = replacement
    assert_rejected_by_every_kernel(ops.reweight_branches, args, OP, argument)


@pytest.mark.parametrize(
    "grad_out", [torch.zeros(2, 3, 4, 7), torch.zeros(2, 3, 4, 8, dtype=torch.float64)]
)
def test_backward_rejects_bad_grad_out(grad_out):
    args = make_args((2, 3, 4, 8), torch.float32)
    assert_rejected(torch.ops.mlpmix.reweight_branches_backward, (grad_out, *args),
                    "reweight_branches_backward", "grad_out")


def test_double_backward_raises():
    args = next(sample_inputs(torch.float64, requires_grad=True))
    assert_no_double_backward(ops.reweight_branches, args, OP)


class ReweightModule(nn.Module):
    """The op on branches derived from one input, with fixed parameters, for scripting,
    compiling and exporting."""

    def __init__(self, params):
        super().__init__()
        self.params = nn.ParameterList([nn.Parameter(p.detach().clone()) for p in params])

    def forward(self, x: Tensor) -> Tensor:
        p = self.params
        return ops.reweight_branches(x, x.flip(1), x * 2.0, p[0], p[1], p[2], p[3])


def _module_and_input():
    x, _, _, *params = make_args((2, 4, 3, 16), torch.float32)
    return ReweightModule(params), x


def test_script_round_trip():
    assert_script_round_trip(*_module_and_input())


def test_torch_compile_fullgraph():
    assert_compiles(*_module_and_input())


def test_export_with_dynamic_batch():
    module, x = _module_and_input()
    assert_exports_with_dynamic_batch(module, x, torch.randn(5, *x.shape[1:]))
