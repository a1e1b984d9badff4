"""mlpmix.ops.cross_scale_embed (spec 1.2): its sample inputs, bad inputs and module for the
generic op tests (tests/test_ops.py), and the tests specific to it."""

from __future__ import annotations

from typing import List, Optional

import pytest
import torch
from torch import Tensor, nn

from mlpmix import ops, reference
from op_testing import (
    assert_matches_reference,
    bad_weight_and_bias,
    leaf,
    on_device,
    with_replaced,
)


def make_x(shape: tuple[int, int, int, int], layout: str, dtype: torch.dtype) -> Tensor:
    """(B, Cin, H, W) with the given memory layout."""
    b, c, h, w = shape
    if layout == "contiguous":
        return torch.randn(b, c, h, w, dtype=dtype)
    if layout == "channels_last":
        return torch.randn(b, c, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)
    if layout == "permuted":
        return torch.randn(w, b, h, c, dtype=dtype).permute(1, 3, 2, 0)
    if layout == "sliced":
        return torch.randn(b, c + 1, 2 * h, w + 2, dtype=dtype)[:, 1:, ::2, 1:-1]
    raise ValueError(layout)


def make_args(shape, kernel_sizes, layout, dtype, requires_grad=False, out_channels=5, bias=True):
    features = shape[1] * sum(k * k for k in kernel_sizes)
    x = leaf(make_x(shape, layout, dtype), requires_grad)
    weight = leaf(torch.randn(out_channels, features, dtype=dtype) / features**0.5, requires_grad)
    b = leaf(torch.randn(out_channels, dtype=dtype), requires_grad) if bias else None
    return x, weight, b, kernel_sizes


def sample_inputs(dtype: torch.dtype, requires_grad: bool = False, device="cpu"):
    cases = [
        # shape (B, Cin, H, W), kernel sizes, layout, bias
        ((2, 2, 8, 4), [4, 8], "contiguous", True),
        ((2, 3, 4, 6), [2, 4], "channels_last", True),
        ((1, 2, 6, 4), [2], "sliced", False),
        ((2, 2, 3, 5), [1, 3], "permuted", True),
        ((1, 1, 4, 8), [2, 6, 4], "sliced", True),
        ((0, 2, 4, 4), [2, 4], "contiguous", True),  # empty batch
    ]
    for shape, kernel_sizes, layout, bias in cases:
        yield on_device(make_args(shape, kernel_sizes, layout, dtype, requires_grad, bias=bias),
                        device)


def output_shape(args) -> tuple[int, ...]:
    """Channels-last tokens (B, H/s, W/s, Cout), s the smallest kernel size."""
    x, weight, _, kernel_sizes = args
    s = min(kernel_sizes)
    b, _, h, w = x.shape
    return (b, h // s, w // s, weight.shape[0])


def valid_args() -> list:
    """A valid float32 call, (2, 3, 4, 8) with kernel sizes [2, 4], that the bad inputs spoil."""
    return list(make_args((2, 3, 4, 8), [2, 4], "contiguous", torch.float32))


def bad_inputs():
    """(argument named in the error, call) on valid_args()."""
    valid = valid_args()
    x, weight, bias, _ = valid
    return with_replaced(valid, [
        ("x", 0, x[0]),
        ("x", 0, x.to(torch.int64)),
        ("x", 0, x.to(torch.bool)),
        ("x", 0, x[:, :, :3]),  # H not a multiple of s
        ("x", 0, x[..., :5]),  # W not a multiple of s
        ("x", 0, x[:, :0]),
        ("kernel_sizes", 3, []),
        ("kernel_sizes", 3, [2, 3]),
        ("kernel_sizes", 3, [1, 2]),  # k - s odd: window not centred
        ("kernel_sizes", 3, [0, 2]),
        *bad_weight_and_bias(weight, bias),
    ])


BAD_GRAD_OUTS = {
    "shape": torch.zeros(2, 2, 4, 4),
    "dtype": torch.zeros(2, 2, 4, 5, dtype=torch.float64),
}


class CrossScaleEmbed(nn.Module):
    """The op with fixed parameters, for scripting, compiling and exporting."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor], kernel_sizes: List[int]):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.kernel_sizes = kernel_sizes

    def forward(self, x: Tensor) -> Tensor:
        return ops.cross_scale_embed(x, self.weight, self.bias, self.kernel_sizes)


def module_and_input():
    x, *params = make_args((2, 3, 4, 8), [2, 4], "channels_last", torch.float32)
    return CrossScaleEmbed(*params), x


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 1, 8, 8)])  # size-1 dims: ambiguous strides
def test_input_gradient_is_channels_last(layout, shape):
    """grad_x is channels-last for any layout of x, as the Meta kernel promises (torch.compile
    traces the backward with those strides), so it reaches the previous level's
    (B, H, W, C) tokens as a contiguous tensor."""
    x, weight, bias, kernel_sizes = make_args(shape, [2, 4], layout, torch.float32,
                                              requires_grad=True)
    out = ops.cross_scale_embed(x, weight, bias, kernel_sizes)
    grad_x = torch.autograd.grad(out, x, torch.randn_like(out))[0]
    assert grad_x.permute(0, 2, 3, 1).is_contiguous()
    assert grad_x.stride() == torch.empty_like(x, memory_format=torch.channels_last).stride()


def test_windows_are_centred_on_the_patch():
    # A weight that reads only the centre pixel of the 3x3 window equals the 1x1 kernel.
    x = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    centre = torch.zeros(1, 1 + 9, dtype=torch.float64)
    centre[0, 1 + 4] = 1.0
    torch.testing.assert_close(ops.cross_scale_embed(x, centre, None, [1, 3])[0, ..., 0], x[0, 0])


def test_images_without_gradient_skip_grad_x():
    """An input that needs no gradient (a model's images) gets none; the weight and bias
    gradients still match the reference, and the backward op returns an empty grad_x."""
    torch.manual_seed(0)
    x, weight, bias, kernel_sizes = make_args((2, 3, 8, 8), [2, 4], "contiguous", torch.float64, True)
    x = leaf(x, False)
    assert_matches_reference(ops.cross_scale_embed, reference.cross_scale_embed, (x, weight, bias, kernel_sizes))
    grad_out = torch.randn(2, 4, 4, 5, dtype=torch.float64)
    grad_x, _, _ = torch.ops.mlpmix.cross_scale_embed_backward(
        grad_out, x, weight, bias, kernel_sizes, x_grad=False)
    assert grad_x.shape == (0,)
