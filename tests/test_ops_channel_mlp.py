"""mlpmix.ops.channel_mlp (the channel-mixing branch of RaftMLP, spec 1.1, and DynaMixer's
MLP(LN2(x)), spec 2.3): fc2(GELU(fc1(LayerNorm_C(x)))) per token. Its sample inputs, bad inputs
and module for the generic op tests (tests/test_ops.py), and the tests specific to it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlpmix import ops, reference
from op_testing import (
    TOLERANCES,
    assert_low_precision_accuracy,
    assert_matches_reference,
    assert_rejected,
    assert_rejected_by_every_kernel,
    check,
    differentiable,
    leaf,
    on_device,
    with_replaced,
)

OP = "channel_mlp"
DTYPES = [torch.float64, torch.float32]


def make_x(shape: tuple[int, ...], layout: str, dtype: torch.dtype) -> Tensor:
    """x of the logical shape (..., C) with the given memory layout."""
    *lead, c = shape
    if layout == "contiguous":
        return torch.randn(*shape, dtype=dtype)
    if layout == "channels_first":  # channels outermost (an NCHW tensor seen channels-last)
        if not lead:
            return torch.randn(c, dtype=dtype)
        if len(lead) == 1:
            return torch.randn(c, lead[0], dtype=dtype).t()
        return torch.randn(lead[0], c, *lead[1:], dtype=dtype).movedim(1, -1)
    if layout == "sliced":  # channel stride 2 and (rank >= 2) a sliced token axis
        if not lead:
            return torch.randn(2 * c, dtype=dtype)[::2]
        return torch.randn(*lead[:-1], lead[-1] + 1, 2 * c, dtype=dtype)[..., 1:, ::2]
    if layout == "row_padded":  # unit channel stride, evenly strided rows with a gap
        return torch.randn(*lead, c + 3, dtype=dtype)[..., 1:-2]
    if layout == "uneven_rows":  # unit channel stride, rows not evenly strided
        assert len(lead) >= 2, shape
        return torch.randn(*lead[:-2], lead[-2], lead[-1] + 2, c, dtype=dtype)[..., 1:-1, :]
    if layout == "expanded":  # stride 0 along the first axis
        assert lead, shape
        return torch.randn(1, *shape[1:], dtype=dtype).expand(*shape)
    if layout == "hw_transposed":  # (B, H, W, C) stored as (B, W, H, C)
        b, h, w = lead
        return torch.randn(b, w, h, c, dtype=dtype).transpose(1, 2)
    raise ValueError(layout)


def in_layout(t: Tensor, layout: str) -> Tensor:
    """`t`'s values in a view with the strides of `layout`, differentiable w.r.t. `t`."""
    return make_x(tuple(t.shape), layout, t.dtype).copy_(t)


def make_args(shape, layout, dtype, hidden, eps=1e-5, requires_grad=False,
              transposed_fc1=False):
    """(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps); one of
    the two fc weights is a transposed (non-contiguous) view."""
    c = shape[-1]

    def param(*size: int) -> Tensor:
        return leaf(torch.randn(*size, dtype=dtype) / size[-1] ** 0.5, requires_grad)

    def transposed(rows: int, cols: int) -> Tensor:
        return leaf(torch.randn(cols, rows, dtype=dtype).t() / cols**0.5, requires_grad)

    x = leaf(make_x(shape, layout, dtype), requires_grad)
    # a non-trivial LayerNorm affine: neither ones nor zeros
    norm_weight = leaf(1 + 0.5 * torch.randn(c, dtype=dtype), requires_grad)
    norm_bias = leaf(0.5 * torch.randn(c, dtype=dtype), requires_grad)
    fc1_weight = transposed(hidden, c) if transposed_fc1 else param(hidden, c)
    fc2_weight = param(c, hidden) if transposed_fc1 else transposed(c, hidden)
    return (x, norm_weight, norm_bias, fc1_weight, param(hidden), fc2_weight, param(c), eps)


SAMPLE_CASES = [
    # shape (..., C), layout, hidden, eps
    ((2, 3, 4, 6), "contiguous", 12, 1e-5),
    ((2, 3, 4, 6), "channels_first", 10, 1e-3),
    ((2, 5, 7), "sliced", 9, 1e-5),
    ((2, 4, 3, 5), "hw_transposed", 7, 0.1),
    ((3, 5, 8), "expanded", 16, 1e-5),  # stride 0 over the batch
    ((2, 3, 6), "row_padded", 5, 1e-5),
    ((2, 3, 4), "uneven_rows", 8, 1e-5),
    ((3, 50, 8), "sliced", 24, 1e-5),  # 150 tokens: a multiple of no tile size
    ((6,), "contiguous", 4, 1e-5),  # rank 1: one token
    ((7, 4), "channels_first", 1, 1e-5),  # hidden = 1
    ((5, 1), "contiguous", 3, 1e-5),  # C = 1: the LayerNorm output is its bias
    ((1, 1, 1, 3), "sliced", 2, 1e-5),  # T = 1
    ((0, 3, 4, 6), "contiguous", 12, 1e-5),  # empty batch
    ((2, 0, 6), "contiguous", 4, 1e-5),  # zero tokens in the middle
]


def sample_inputs(dtype: torch.dtype, requires_grad: bool = False, device="cpu"):
    for i, (shape, layout, hidden, eps) in enumerate(SAMPLE_CASES):
        yield on_device(make_args(shape, layout, dtype, hidden, eps, requires_grad,
                                  transposed_fc1=i % 2 == 1), device)


def valid_args() -> list:
    """A valid float32 call, (2, 3, 4, 6) with hidden 12, that the bad inputs spoil."""
    return list(make_args((2, 3, 4, 6), "contiguous", torch.float32, 12))


def bad_inputs():
    """(argument named in the error, call) on valid_args()."""
    valid = valid_args()
    x, nw, nb, w1, b1, w2, b2, _ = valid
    return with_replaced(valid, [
        ("x", 0, torch.tensor(1.0)),  # 0-dim: no channel axis
        ("x", 0, x.to(torch.int32)),
        ("x", 0, x.to(torch.bool)),
        ("x", 0, x.to(torch.complex64)),
        ("norm_weight", 1, nw[:-1]),
        ("norm_weight", 1, nw.unsqueeze(0)),
        ("norm_weight", 1, nw.double()),
        ("norm_weight", 1, nw.to("meta")),
        ("norm_bias", 2, nb[:-1]),
        ("norm_bias", 2, nb.unsqueeze(1)),
        ("norm_bias", 2, nb.double()),
        ("fc1_weight", 3, w1[:, :-1]),
        ("fc1_weight", 3, w1[0]),
        ("fc1_weight", 3, w1.unsqueeze(0)),
        ("fc1_weight", 3, w1.double()),
        ("fc1_weight", 3, w1.to("meta")),
        ("fc1_bias", 4, b1[:-1]),
        ("fc1_bias", 4, b1.unsqueeze(0)),
        ("fc1_bias", 4, b1.to("meta")),
        ("fc2_weight", 5, w2[:-1]),
        ("fc2_weight", 5, w2[:, :-1]),
        ("fc2_weight", 5, w2.t()),
        ("fc2_weight", 5, w2.double()),
        ("fc2_weight", 5, w2.to("meta")),
        ("fc2_bias", 6, b2[:-1]),
        ("fc2_bias", 6, b2.double()),
        ("fc2_bias", 6, b2.to("meta")),
    ])


BAD_GRAD_OUTS = {
    "channels": torch.zeros(2, 3, 4, 5),
    "rank": torch.zeros(2, 3, 24),
    "dtype": torch.zeros(2, 3, 4, 6, dtype=torch.float64),
    "device": torch.zeros(2, 3, 4, 6, device="meta"),
}

# (saved tensor, id, what spoils it) for channel_mlp_backward on valid_args(): the hidden
# that _channel_mlp_forward keeps is (T, hidden) = (24, 12)
BAD_SAVED = [
    ("hidden", "width", lambda h: h[:, :-1]),
    ("hidden", "tokens", lambda h: h[:-1]),
    ("hidden", "rank", lambda h: h.flatten()),
    ("hidden", "unflattened", lambda h: h.reshape(2, 3, 4, h.shape[1])),  # x's leading dims
    ("hidden", "dtype", lambda h: h.double()),
]


class ChannelMlp(nn.Module):
    """The op with fixed parameters, for scripting, compiling and exporting."""

    def __init__(self, args):
        super().__init__()
        _, *params, self.eps = args
        self.params = nn.ParameterList([nn.Parameter(p.detach().clone()) for p in params])

    def forward(self, x: Tensor) -> Tensor:
        p = self.params
        return ops.channel_mlp(x, p[0], p[1], p[2], p[3], p[4], p[5], self.eps)


def module_and_input(shape=(2, 3, 4, 6)):
    args = make_args(shape, "channels_first", torch.float32, 12, 1e-3)
    return ChannelMlp(args), args[0]


def reference_hidden(x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                     eps):
    """fc1's output before GELU, (T, hidden) in the row-major order of x's leading dims."""
    u = F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps)
    return F.linear(u, fc1_weight, fc1_bias).reshape(-1, fc1_weight.shape[0])


def _with_threads(threads, fn):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["contiguous", "channels_first", "sliced", "uneven_rows",
                                    "hw_transposed"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference_over_many_tokens(dtype, layout, threads):
    """2*23*29 = 1334 tokens: many CPU tiles (the last one partial) and, with 2 threads,
    several chunks; hidden 64 = 4 C."""
    torch.manual_seed(1)
    args = make_args((2, 23, 29, 16), layout, torch.float64, 64, 1e-5, requires_grad=True)

    def run():
        if dtype == torch.float64:
            assert_matches_reference(ops.channel_mlp, reference.channel_mlp, args)
        else:  # parameter gradients sum over 1334 tokens: judged against float32's own error
            leaves = [leaf(args[0].contiguous(), True), *args[1:7]]
            check(ops.channel_mlp, reference.channel_mlp, leaves,
                  lambda t: [in_layout(t[0], layout), *t[1:], args[7]], torch.float32)

    _with_threads(threads, run)


@pytest.mark.parametrize("layout", ["contiguous", "sliced", "channels_first"])
def test_forward_output_does_not_depend_on_thread_count(layout):
    torch.manual_seed(2)
    args = make_args((2, 23, 29, 16), layout, torch.float32, 64)
    one = _with_threads(1, lambda: ops.channel_mlp(*args))
    two = _with_threads(2, lambda: ops.channel_mlp(*args))
    assert torch.equal(one, two)
    torch.testing.assert_close(one, reference.channel_mlp(*args), **TOLERANCES[torch.float32])


@pytest.mark.parametrize("threads, tokens", [
    (16, 1000), (32, 770), (64, 800),
    (64, 1568),  # RaftMLP-S level 3 at batch 8 (8x14x14 tokens) on a 64-thread machine
])
def test_thread_counts_of_larger_machines(threads, tokens):
    """Many threads and a few tiles' worth of tokens (the CPU kernel may split such a call
    into at least one tile per thread): forward and all gradients equal the reference.
    More threads than this machine has cores is slow but exact."""
    torch.manual_seed(15)
    args = make_args((tokens, 8), "contiguous", torch.float64, 16, requires_grad=True)
    _with_threads(threads, lambda: assert_matches_reference(
        ops.channel_mlp, reference.channel_mlp, args))


def test_float32_is_as_accurate_as_the_reference_for_tiny_variance_tokens():
    """Tokens x = 1000 + 1e-3 * randn (variance 1e-6 next to a mean square of 1e6) beside
    ordinary tokens: a one-pass E[x^2] - E[x]^2 variance in float32 loses everything there.
    Judged as test_properties judges float32: the error against float64 at most twice that
    of the float32 reference, outputs and all seven gradients. The inputs are float32 values
    (the float64 truth sees the same numbers)."""

    for seed in range(12):
        torch.manual_seed(seed)
        tokens, channels, hidden = [(1, 16, 8), (7, 3, 5), (150, 16, 64), (40, 64, 32)][seed % 4]
        eps = [1e-5, 1e-12][seed // 4 % 2]
        x = torch.randn(tokens, channels, dtype=torch.float64)
        tiny = torch.rand(tokens) < 0.5
        tiny[0] = True
        x[tiny] = 1000 + 1e-3 * torch.randn(int(tiny.sum()), channels, dtype=torch.float64)
        leaves = [x] + [torch.randn(*size, dtype=torch.float64) / size[-1] ** 0.5
                        for size in [(channels,), (channels,), (hidden, channels), (hidden,),
                                     (channels, hidden), (channels,)]]
        leaves = [t.float().double().requires_grad_() for t in leaves]

        def build(t):
            return [t[0], 1 + t[1], *t[2:], eps]

        check(ops.channel_mlp, reference.channel_mlp, leaves, build, torch.float32)


@pytest.mark.parametrize("channels", [4, 5, 9])
@pytest.mark.parametrize("channel_stride_zero", [False, True])
def test_constant_tokens_normalise_to_the_bias(channel_stride_zero, channels):
    """A token whose channels are all equal has variance 0: its LayerNorm output is exactly
    norm_bias (x - mean = 0, rstd = 1/sqrt(eps) = 316), so the branch is
    fc2(GELU(fc1(norm_bias))), norm_weight gets no gradient and x the LayerNorm backward at
    x_hat = 0: rstd (gu*gamma - mean(gu*gamma)). Judged against these closed forms in float64,
    not against the reference, whose ATen LayerNorm forms x*rstd - mean*rstd and loses digits
    at large levels. The levels include values whose sum over C channels divided by C is not
    the value itself in floating point (123.456 for C = 5): a mean off by one ulp, amplified
    by rstd, would show. With `channel_stride_zero` x is a stride-0 view along C."""
    torch.manual_seed(14)
    levels = torch.tensor([0.0, 1.0, -2.5, 123.456, 1000 / 7, -77.7, 0.1, 3e3 + 1 / 3],
                          dtype=torch.float64).reshape(2, 4, 1)
    eps = 1e-5
    args = list(make_args((2, 4, channels), "contiguous", torch.float64, 7, eps))
    x = levels.expand(2, 4, channels) if channel_stride_zero else levels.repeat(1, 1, channels)
    args[0] = leaf(x, True)
    args[1:7] = [leaf(a, True) for a in args[1:7]]
    out = ops.channel_mlp(*args)
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, args[:7], grad_out)

    norm_weight, norm_bias, mlp = args[1], args[2], [leaf(a, True) for a in args[3:7]]
    u = leaf(norm_bias.expand(2, 4, channels).clone(), True)
    expected_out = F.linear(F.gelu(F.linear(u, mlp[0], mlp[1])), mlp[2], mlp[3])
    gu, *mlp_grads = torch.autograd.grad(expected_out, [u, *mlp], grad_out)
    dy = gu * norm_weight.detach()
    expected = [(dy - dy.mean(-1, keepdim=True)) / eps**0.5, torch.zeros_like(norm_weight),
                gu.sum((0, 1)), *mlp_grads]
    torch.testing.assert_close(out, expected_out, **TOLERANCES[torch.float64])
    for name, g, want in zip(["x", "norm_weight", "norm_bias", "fc1_weight", "fc1_bias",
                              "fc2_weight", "fc2_bias"], got, expected):
        torch.testing.assert_close(g, want, **TOLERANCES[torch.float64],
                                   msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_keeps_the_fc1_preactivation(dtype):
    """_channel_mlp_forward returns the op's output and fc1's output before GELU as
    (T, hidden), tokens in the row-major order of x's leading dims."""
    torch.manual_seed(3)
    for args in sample_inputs(dtype):
        out, hidden = torch.ops.mlpmix._channel_mlp_forward(*args)
        torch.testing.assert_close(out, reference.channel_mlp(*args), **TOLERANCES[dtype])
        assert out.shape == args[0].shape and out.is_contiguous()
        tokens = args[0].numel() // args[0].shape[-1]
        assert hidden.shape == (tokens, args[3].shape[0]) and hidden.dtype == dtype
        torch.testing.assert_close(hidden, reference_hidden(*args), **TOLERANCES[dtype])


def _reference_grads(args, grad_out, dtype):
    """The reference's seven gradients for `args` computed in `dtype`."""
    inputs = [leaf(a.to(dtype), True) for a in args[:7]]
    out = reference.channel_mlp(*inputs, args[7])
    return torch.autograd.grad(out, inputs, grad_out.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_op_matches_the_reference_gradients(dtype):
    """channel_mlp_backward, with and without the kept hidden, returns the seven gradients
    (shaped like their inputs) of the reference: to ~1e-12 in float64; in float32 within
    twice the float32 reference's own error against float64 (with C = 1, the float32
    reference's norm_weight gradient is rounding noise around the true 0)."""
    torch.manual_seed(4)
    backward = torch.ops.mlpmix.channel_mlp_backward
    for args in sample_inputs(dtype):
        out, hidden = torch.ops.mlpmix._channel_mlp_forward(*args)
        grad_out = torch.randn_like(out)
        truth = _reference_grads(args, grad_out, torch.float64)
        baseline = _reference_grads(args, grad_out, dtype)
        for kept in (None, hidden):
            grads = backward(grad_out, *args, kept)
            assert len(grads) == 7
            for got, base, want, arg in zip(grads, baseline, truth, args):
                assert got.shape == arg.shape and got.dtype == dtype
                if dtype == torch.float64:
                    torch.testing.assert_close(got, want, **TOLERANCES[dtype])
                else:
                    assert_low_precision_accuracy(got, base, want)


def test_backward_reads_the_kept_hidden():
    """A hidden that differs from the true pre-activation changes the gradients: the
    backward uses what it is given rather than ignoring it."""
    args = make_args((2, 3, 6), "contiguous", torch.float64, 5)
    out, hidden = torch.ops.mlpmix._channel_mlp_forward(*args)
    grad_out = torch.randn_like(out)
    backward = torch.ops.mlpmix.channel_mlp_backward
    honest = backward(grad_out, *args, hidden)
    shifted = backward(grad_out, *args, hidden + 1.0)
    assert not torch.allclose(honest[5], shifted[5])  # fc2_weight's gradient reads GELU(hidden)


def test_backward_rejects_hidden_on_another_device():
    args = make_args((2, 3, 6), "contiguous", torch.float32, 5)
    out, kept = torch.ops.mlpmix._channel_mlp_forward(*args)
    assert_rejected(torch.ops.mlpmix.channel_mlp_backward,
                    (torch.zeros_like(out), *args, kept.to("meta")),
                    "channel_mlp_backward", "hidden")


def test_eps_is_used():
    torch.manual_seed(7)
    args = list(next(sample_inputs(torch.float64)))
    default = ops.channel_mlp(*args[:7])
    torch.testing.assert_close(default, reference.channel_mlp(*args[:7]),
                               **TOLERANCES[torch.float64])
    args[7] = 0.5
    out = ops.channel_mlp(*args)
    torch.testing.assert_close(out, reference.channel_mlp(*args), **TOLERANCES[torch.float64])
    assert not torch.allclose(out, default)
    torch.testing.assert_close(ops.channel_mlp(*args[:7], eps=0.5), out, rtol=0, atol=0)


def test_tokens_are_mixed_independently():
    """Changing one token changes that token's output and no other."""
    torch.manual_seed(8)
    args = list(make_args((2, 5, 7), "contiguous", torch.float64, 9))
    before = ops.channel_mlp(*args)
    x = args[0].clone()
    x[1, 3] = torch.randn(7, dtype=torch.float64)
    args[0] = x
    delta = (ops.channel_mlp(*args) - before).abs().amax(-1)
    assert delta[1, 3] > 1e-3
    delta[1, 3] = 0
    assert delta.max() == 0


def test_input_is_not_modified():
    args = make_args((2, 4, 3, 5), "hw_transposed", torch.float32, 7, requires_grad=True)
    before = [a.detach().clone() for a in args[:7]]
    out = ops.channel_mlp(*args)
    torch.autograd.grad(out, differentiable(args), torch.randn_like(out))
    for a, b in zip(args[:7], before):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(0, 6), (0, 3, 4, 6), (2, 0, 6), (3, 2, 0, 6)])
def test_empty_input_gives_empty_output_and_zero_gradients(shape):
    args = make_args(shape, "contiguous", torch.float64, 4, requires_grad=True)
    out = ops.channel_mlp(*args)
    assert out.shape == shape and out.dtype == torch.float64
    grads = torch.autograd.grad(out, differentiable(args), torch.randn_like(out))
    assert grads[0].shape == shape
    for g, a in zip(grads[1:], args[1:7]):
        assert g.shape == a.shape and torch.count_nonzero(g) == 0
    out, hidden = torch.ops.mlpmix._channel_mlp_forward(*[leaf(a, False) if isinstance(a, Tensor)
                                                         else a for a in args])
    assert out.shape == shape and hidden.shape == (0, 4)


@pytest.mark.parametrize("which", ["x", "weights"])
def test_gradients_of_a_subset_of_the_inputs(which):
    """Only x (frozen weights) or only the parameters (x an input image) require grad."""
    torch.manual_seed(9)
    args = list(make_args((2, 3, 4, 6), "channels_first", torch.float64, 12))
    if which == "x":
        args[0] = leaf(args[0], True)
    else:
        args[1:7] = [leaf(a, True) for a in args[1:7]]
    assert_matches_reference(ops.channel_mlp, reference.channel_mlp, args)


def test_gradients_reach_the_base_of_a_view():
    """x a permuted, sliced view of a tensor that requires grad: the gradient lands in the
    base in the right places."""
    torch.manual_seed(10)
    base = torch.randn(2, 12, 5, 3, dtype=torch.float64, requires_grad=True)
    params = make_args((6,), "contiguous", torch.float64, 8)[1:]

    def run(fn):
        x = base.permute(0, 2, 3, 1)[..., ::2]  # (2, 5, 3, 6), channel stride 2*5*3
        out = fn(x, *params)
        return out, torch.autograd.grad(out, base, torch.ones_like(out))[0]

    out, grad = run(ops.channel_mlp)
    expected_out, expected_grad = run(reference.channel_mlp)
    torch.testing.assert_close(out, expected_out, **TOLERANCES[torch.float64])
    torch.testing.assert_close(grad, expected_grad, **TOLERANCES[torch.float64])
    assert torch.count_nonzero(grad[:, 1::2]) == 0


def test_gradcheck_slow_mode_on_a_tiny_case():
    torch.manual_seed(12)
    args = make_args((2, 3, 4), "sliced", torch.float64, 3, 1e-3, requires_grad=True)
    assert torch.autograd.gradcheck(ops.channel_mlp, args)


@pytest.mark.parametrize("x_shape", [(2, 3, 0), (0,), (4, 0)])
def test_x_without_channels_is_rejected_naming_x(x_shape):
    """C = 0 is rejected even when every weight agrees with it."""
    hidden = 3
    args = [torch.randn(*x_shape), torch.ones(0), torch.zeros(0), torch.randn(hidden, 0),
            torch.randn(hidden), torch.randn(0, hidden), torch.zeros(0), 1e-5]
    assert_rejected_by_every_kernel(ops.channel_mlp, args, OP, "x")
    assert_rejected_by_every_kernel(torch.ops.mlpmix._channel_mlp_forward, args,
                                    "_channel_mlp_forward", "x")


def test_hidden_width_zero_is_rejected():
    args = [torch.randn(2, 3, 4), torch.ones(4), torch.zeros(4), torch.randn(0, 4),
            torch.randn(0), torch.randn(4, 0), torch.zeros(4), 1e-5]
    with pytest.raises(RuntimeError, match=r"mlpmix\.channel_mlp: fc1_weight\b"):
        ops.channel_mlp(*args)


def test_error_message_shows_expected_and_actual_shape():
    args = list(make_args((2, 3, 4, 6), "contiguous", torch.float32, 12))
    args[3] = torch.randn(12, 5)
    expected_vs_actual = r"mlpmix\.channel_mlp: fc1_weight .*\[12, 6\], got \[12, 5\]"
    with pytest.raises(RuntimeError, match=expected_vs_actual):
        ops.channel_mlp(*args)
