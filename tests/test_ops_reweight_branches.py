"""mlpmix.ops.reweight_branches (DynaMixer's re-weighting of its three branches): its sample
inputs, bad inputs and module for the generic op tests (tests/test_ops.py), and the tests
specific to it."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlpmix import ops, reference
from op_testing import check, leaf, on_device, with_replaced


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


def sample_inputs(dtype: torch.dtype, requires_grad: bool = False, device="cpu"):
    for shape, layouts, hidden in SAMPLE_CASES:
        yield on_device(make_args(shape, dtype, layouts, hidden, requires_grad), device)


def valid_args() -> list:
    """A valid float32 call, (2, 3, 4, 8) with hidden 2, that the bad inputs spoil."""
    return list(make_args((2, 3, 4, 8), torch.float32))


def bad_inputs():
    """(argument named in the error, call) on valid_args()."""
    valid = valid_args()
    h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias = valid
    return with_replaced(valid, [
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
    ])


BAD_GRAD_OUTS = {
    "shape": torch.zeros(2, 3, 4, 7),
    "dtype": torch.zeros(2, 3, 4, 8, dtype=torch.float64),
}


class ReweightModule(nn.Module):
    """The op on branches derived from one input, with fixed parameters, for scripting,
    compiling and exporting."""

    def __init__(self, params):
        super().__init__()
        self.params = nn.ParameterList([nn.Parameter(p.detach().clone()) for p in params])

    def forward(self, x: Tensor) -> Tensor:
        p = self.params
        return ops.reweight_branches(x, x.flip(1), x * 2.0, p[0], p[1], p[2], p[3])


def module_and_input():
    x, _, _, *params = make_args((2, 4, 3, 16), torch.float32)
    return ReweightModule(params), x


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
