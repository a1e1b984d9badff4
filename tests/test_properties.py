"""Property-based tests: over shapes, strides (permuted, sliced, expanded views), dtypes and
argument values, every op equals mlpmix.reference forward and backward.

The example budget is small for CI; set MLPMIX_HYPOTHESIS_EXAMPLES for a deeper run.
"""

from __future__ import annotations

import os

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlpmix import ops, reference
from op_testing import check

EXAMPLES = int(os.environ.get("MLPMIX_HYPOTHESIS_EXAMPLES", "25"))
# Fixed examples by default (a stable CI); a deeper run with MLPMIX_HYPOTHESIS_EXAMPLES explores anew.
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    derandomize="MLPMIX_HYPOTHESIS_EXAMPLES" not in os.environ)
LAYOUTS = ["contiguous", "permuted", "sliced", "expanded"]


def view_of(layout, shape):
    """(leaf shape, view): a leaf of the returned shape seen through `view` has the logical
    `shape` with the strides of `layout`."""
    if layout == "permuted":  # reverse the memory order of every axis but the last
        order = list(range(len(shape) - 1))[::-1] + [len(shape) - 1]
        inverse = [order.index(i) for i in range(len(shape))]
        return [shape[i] for i in order], lambda t: t.permute(inverse)
    if layout == "sliced":  # every second element of the last axis
        return [*shape[:-1], 2 * shape[-1]], lambda t: t[..., ::2]
    if layout == "expanded" and shape[0] > 0:  # stride 0 along the first axis
        return [1, *shape[1:]], lambda t: t.expand(*shape)
    return list(shape), lambda t: t


def param(*shape):
    return (torch.randn(*shape, dtype=torch.float64) / max(shape[-1], 1) ** 0.5).requires_grad_()


dtypes = st.sampled_from([torch.float32, torch.float64])


@SETTINGS
@given(batch=st.integers(0, 3), height=st.integers(1, 5), width=st.integers(1, 5),
       segments=st.integers(1, 3), width_per_segment=st.integers(1, 3), reduced=st.integers(1, 3),
       dim=st.sampled_from([1, 2, -3, -2]), bias=st.booleans(), layout=st.sampled_from(LAYOUTS),
       dtype=dtypes, seed=st.integers(0, 2**31 - 1))
def test_dynamixer(batch, height, width, segments, width_per_segment, reduced, dim, bias, layout,
                   dtype, seed):
    torch.manual_seed(seed)  # tensors drawn from the example, so failures replay
    channels = segments * width_per_segment
    shape = (batch, height, width, channels)
    n = shape[dim]
    x_shape, view = view_of(layout, shape)
    sizes = [x_shape, (segments * reduced, channels), (segments * reduced,), (n * n, n * reduced),
             (n * n,)]
    leaves = [param(*size) for size in sizes]

    def build(t):
        return [view(t[0]), t[1], t[2] if bias else None, t[3], t[4] if bias else None,
                segments, dim]

    check(ops.dynamixer, reference.dynamixer, leaves, build, dtype)


@SETTINGS
@given(batch=st.integers(0, 3), height=st.integers(1, 5), width=st.integers(1, 5),
       raft_size=st.integers(1, 3), rafts=st.integers(1, 3), hidden=st.integers(1, 8),
       dim=st.sampled_from([1, 2, -3, -2]), eps=st.sampled_from([1e-5, 1e-3]),
       layout=st.sampled_from(LAYOUTS), dtype=dtypes, seed=st.integers(0, 2**31 - 1))
def test_raft_token_mixing(batch, height, width, raft_size, rafts, hidden, dim, eps, layout,
                           dtype, seed):
    torch.manual_seed(seed)
    channels = raft_size * rafts
    shape = (batch, height, width, channels)
    features = raft_size * shape[dim]
    x_shape, view = view_of(layout, shape)
    sizes = [x_shape, (channels,), (channels,), (hidden, features), (hidden,),
             (features, hidden), (features,)]
    leaves = [param(*size) for size in sizes]

    def build(t):
        return [view(t[0]), 1 + t[1], *t[2:], raft_size, dim, eps]

    check(ops.raft_token_mixing, reference.raft_token_mixing, leaves, build, dtype)


@SETTINGS
@given(lead=st.lists(st.integers(0, 4), min_size=0, max_size=3), channels=st.integers(1, 8),
       hidden=st.integers(1, 8), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
       offset=st.sampled_from([0.0, 10.0]), layout=st.sampled_from(LAYOUTS), dtype=dtypes,
       seed=st.integers(0, 2**31 - 1))
def test_channel_mlp(lead, channels, hidden, eps, offset, layout, dtype, seed):
    """x of rank 1 to 4 (any leading shape, zero tokens included); in float32 with a mean
    offset too (float64 is held to 1e-12, which an offset's cancellation in a token of two
    close channels takes from the reference as much as from the op)."""
    # Expanding a rank-1 x would expand its channel axis: a constant token, whose summed
    # input gradient is a pure cancellation (tests/test_ops_channel_mlp.py tests constant tokens).
    assume(not (layout == "expanded" and not lead))
    torch.manual_seed(seed)
    shape = (*lead, channels)
    x_shape, view = view_of(layout, shape)
    sizes = [x_shape, (channels,), (channels,), (hidden, channels), (hidden,),
             (channels, hidden), (channels,)]
    leaves = [param(*size) for size in sizes]
    # x on a 2**-20 grid: x + offset is exact in float32 too, so that float32 is judged on
    # its arithmetic, not on rounding the offset input (which both results would inherit)
    leaves[0] = ((leaves[0] * 2**20).round() / 2**20).detach().requires_grad_()
    offset = offset if dtype == torch.float32 else 0.0

    def build(t):
        return [view(t[0] + offset), 1 + t[1], *t[2:], eps]

    check(ops.channel_mlp, reference.channel_mlp, leaves, build, dtype)


@SETTINGS
@given(batch=st.integers(0, 2), in_channels=st.integers(1, 3), out_channels=st.integers(1, 4),
       stride=st.integers(1, 3), multiples=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       grid=st.tuples(st.integers(1, 3), st.integers(1, 3)), bias=st.booleans(),
       layout=st.sampled_from(LAYOUTS), dtype=dtypes, seed=st.integers(0, 2**31 - 1))
def test_cross_scale_embed(batch, in_channels, out_channels, stride, multiples, grid, bias, layout,
                           dtype, seed):
    torch.manual_seed(seed)
    # every k a multiple of s with k - s even: k = s * (2m - 1) keeps that for any s
    kernel_sizes = [stride] + [stride * (2 * m - 1) for m in multiples]
    shape = (batch, in_channels, grid[0] * stride, grid[1] * stride)
    x_shape, view = view_of(layout, shape)
    sizes = [x_shape, (out_channels, in_channels * sum(k * k for k in kernel_sizes)),
             (out_channels,)]
    leaves = [param(*size) for size in sizes]

    def build(t):
        return [view(t[0]), t[1], t[2] if bias else None, kernel_sizes]

    check(ops.cross_scale_embed, reference.cross_scale_embed, leaves, build, dtype)
