"""mlpmix.ops.linear (nn.Linear's function on mlpmix's CPU GEMMs): its sample inputs, bad
inputs and module for the generic op tests (tests/test_ops.py), and the tests specific to it."""

from __future__ import annotations

from typing import Optional

import pytest
import torch
from torch import Tensor, nn

from mlpmix import ops, reference
from mlpmix.nn.layers import Linear
from op_testing import bad_weight_and_bias, check, leaf, on_device, with_replaced

DTYPES = [torch.float64, torch.float32]


def make_x(shape: tuple[int, ...], layout: str, dtype: torch.dtype) -> Tensor:
    """``(..., in_features)`` with the given memory layout."""
    if layout == "contiguous":
        return torch.randn(shape, dtype=dtype)
    if layout == "transposed":  # features strided, tokens adjacent
        return torch.randn(tuple(reversed(shape)), dtype=dtype).permute(
            *reversed(range(len(shape))))
    if layout == "sliced":  # rows padded, every other token
        *lead, features = shape
        return torch.randn(*lead[:-1], 2 * lead[-1], features + 3, dtype=dtype)[..., ::2, 1:-2]
    if layout == "expanded":  # stride 0 over the first axis
        return torch.randn(1, *shape[1:], dtype=dtype).expand(shape)
    raise ValueError(layout)


def make_args(shape, layout, dtype, out_features, requires_grad=False, bias=True,
              weight_transposed=False):
    in_features = shape[-1]
    x = leaf(make_x(shape, layout, dtype), requires_grad)
    if weight_transposed:
        weight = torch.randn(in_features, out_features, dtype=dtype).t()
    else:
        weight = torch.randn(out_features, in_features, dtype=dtype)
    weight = leaf(weight / max(in_features, 1) ** 0.5, requires_grad)
    b = leaf(torch.randn(out_features, dtype=dtype), requires_grad) if bias else None
    return x, weight, b


SAMPLE_CASES = [
    # shape (..., in_features), layout, out_features, bias
    ((2, 3, 24), "contiguous", 16, True),  # large enough for the oneDNN path in float32
    ((2, 4, 6, 20), "transposed", 12, True),
    ((3, 5, 17), "sliced", 9, False),
    ((4, 3, 16), "expanded", 8, True),
    ((40, 33), "contiguous", 7, False),
    ((6,), "contiguous", 4, True),  # rank 1
    ((5, 1), "contiguous", 3, True),  # in_features = 1
    ((0, 3, 8), "contiguous", 5, True),  # no rows
    ((4, 0), "contiguous", 3, True),  # no features: the output is the bias
]


def sample_inputs(dtype: torch.dtype, requires_grad: bool = False, device="cpu"):
    for i, (shape, layout, out_features, bias) in enumerate(SAMPLE_CASES):
        yield on_device(make_args(shape, layout, dtype, out_features, requires_grad, bias,
                                  weight_transposed=i % 2 == 1), device)


def output_shape(args) -> tuple[int, ...]:
    x, weight, _ = args
    return (*x.shape[:-1], weight.shape[0])


def valid_args() -> list:
    """A valid float32 call, (2, 3, 8) -> 5, that the bad inputs spoil."""
    return list(make_args((2, 3, 8), "contiguous", torch.float32, 5))


def bad_inputs():
    """(argument named in the error, call) on valid_args()."""
    valid = valid_args()
    x, weight, bias = valid
    return with_replaced(valid, [
        ("x", 0, torch.tensor(1.0)),
        ("x", 0, x.to(torch.int64)),
        *bad_weight_and_bias(weight, bias),
        ("bias", 2, bias.reshape(1, 5)),
    ])


BAD_GRAD_OUTS = {
    "shape": torch.zeros(2, 3, 4),
    "dtype": torch.zeros(2, 3, 5, dtype=torch.float64),
}


class LinearModule(nn.Module):
    """The op with fixed parameters, for scripting, compiling and exporting."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return ops.linear(x, self.weight, self.bias)


def module_and_input():
    x, *params = make_args((2, 4, 6, 20), "transposed", torch.float32, 12)
    return LinearModule(*params), x


@pytest.mark.parametrize("mkldnn", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_float32_model_sizes_as_accurate_as_the_reference(mkldnn, bias):
    """DynaMixer-S stage-B sizes, where float32 takes oneDNN (when enabled and supported,
    on CPUs other than Intel's):
    output and gradients judged against the float64 result as flash-attention judges low
    precision. With torch.backends.mkldnn disabled the op runs ATen's BLAS instead."""
    torch.manual_seed(0)
    leaves = list(make_args((2, 16, 16, 384), "contiguous", torch.float64, 384, True, bias))
    leaves = [t for t in leaves if t is not None]
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = mkldnn
    try:
        check(ops.linear, reference.linear, leaves,
              lambda t: [*t, None] if not bias else t, torch.float32)
    finally:
        torch.backends.mkldnn.enabled = enabled


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_bias_gradient_is_empty_without_a_bias(dtype):
    """linear_backward returns a (0,) bias gradient where there is no bias (tests/test_ops.py
    checks the other gradients' shapes and strides)."""
    for x, weight, bias in sample_inputs(dtype):
        grad_out = torch.ones(output_shape((x, weight, bias)), dtype=dtype)
        _, _, grad_bias = torch.ops.mlpmix.linear_backward(grad_out, x, weight, bias)
        assert grad_bias.shape == ((0,) if bias is None else bias.shape)


def test_linear_module_is_nn_linear_on_the_op():
    """Same parameters, state dict keys and output as nn.Linear, so checkpoints load into
    either; the fused implementation runs mlpmix.linear."""
    torch.manual_seed(0)
    plain = nn.Linear(24, 16)
    fused = Linear(24, 16)
    fused.load_state_dict(plain.state_dict())
    assert isinstance(fused, nn.Linear) and fused.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(2, 5, 24, dtype=torch.float32)
    torch.testing.assert_close(fused(x), plain(x), rtol=1e-5, atol=1e-5)
    traced = torch.jit.trace(fused, x)
    assert any(n.kind() == "mlpmix::linear" for n in traced.graph.nodes())
