"""torch.ops.mlpmix.dynamixer: its sample inputs and bad inputs for the generic op tests
(tests/test_ops.py), and the tests specific to it: what _dynamixer_forward keeps for the
backward, strides, threads and error messages."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import mlpmix
from mlpmix import ops, reference
from einops import rearrange
from op_testing import TOLERANCES, on_device


def make_args(shape, num_segments, reduced_dim, dim, dtype, requires_grad=False, bias=True,
              layout=lambda t: t):
    """Arguments of dynamixer for an x of `shape` (made contiguous, then passed through
    `layout`, which may return a view with other strides of the same logical shape)."""
    n, channels = shape[dim], shape[-1]
    def rand(*size):
        return torch.randn(*size, dtype=dtype)
    x = layout(rand(*shape))
    args = [
        x,
        rand(num_segments * reduced_dim, channels) / channels**0.5,
        rand(num_segments * reduced_dim) if bias else None,
        rand(n * n, n * reduced_dim) / (n * reduced_dim) ** 0.5,
        rand(n * n) if bias else None,
    ]
    for t in args:
        if t is not None:
            t.requires_grad_(requires_grad)
    return args + [num_segments, dim]


def transposed(t):
    # Same logical shape, axes 1 and 2 swapped in memory.
    return t.transpose(1, 2).contiguous().transpose(1, 2)


def channel_strided(t):
    # Every second channel of a wider tensor: channel stride 2.
    wide = torch.cat([t, torch.zeros_like(t)], dim=-1)
    return wide.view(*t.shape[:-1], t.shape[-1], 2)[..., 0]


def _samples(dtype, requires_grad):
    """The shared sample set: plain, 4-D along H and W, negative dims, permuted and
    channel-strided views, no biases, a 5-D input and an empty batch."""
    rg = requires_grad
    yield make_args((2, 5, 12), 3, 2, -2, dtype, rg)
    yield make_args((2, 4, 6, 8), 4, 1, 1, dtype, rg)
    yield make_args((2, 4, 6, 8), 4, 1, 2, dtype, rg)
    yield make_args((2, 4, 6, 8), 2, 3, -3, dtype, rg, layout=transposed)
    yield make_args((3, 5, 4, 6), 1, 2, 2, dtype, rg, layout=transposed)
    yield make_args((2, 3, 5, 6), 6, 1, 1, dtype, rg, layout=channel_strided)
    yield make_args((2, 5, 12), 3, 2, -2, dtype, rg, bias=False)
    yield make_args((2, 3, 4, 3, 4), 2, 2, 2, dtype, rg)
    yield make_args((0, 4, 6, 8), 4, 1, 1, dtype, rg)
    # Segments wide enough for the kernels' vector tiles (and their remainders), N not a
    # multiple of the tile rows, rows copied to scratch (along H) and read in place (W).
    yield make_args((2, 7, 3, 80), 2, 2, 1, dtype, rg)
    yield make_args((2, 3, 7, 54), 2, 1, 2, dtype, rg, layout=transposed)
    # N past the softmax's vector of output tokens (8 float, 4 double) with a remainder.
    yield make_args((2, 11, 3, 16), 2, 1, 1, dtype, rg)
    yield make_args((2, 2, 9, 8), 2, 1, 2, dtype, rg, bias=False)


def sample_inputs(dtype, requires_grad=False, device="cpu"):
    return (on_device(args, device) for args in _samples(dtype, requires_grad))


def valid_args() -> list:
    """A valid float32 call, x (2, 4, 6, 8), dim=1, S=4, d=1, that the bad inputs spoil."""
    return make_args((2, 4, 6, 8), 4, 1, 1, torch.float32)


def _bad(**changes):
    """valid_args() with `changes` applied, by name."""
    args = dict(zip(["x", "compress_weight", "compress_bias", "generate_weight",
                     "generate_bias", "num_segments", "dim"], valid_args()))
    for key, value in changes.items():
        args[key] = value(args[key]) if callable(value) else value
    return args


BAD_INPUTS = {
    "x rank 2": (_bad(x=lambda t: t[0, 0], dim=0), "x"),
    "x integer": (_bad(x=lambda t: t.to(torch.int32)), "x"),
    "x bool": (_bad(x=lambda t: t > 0), "x"),
    "dim is channel axis": (_bad(dim=3), "dim"),
    "dim is channel axis (-1)": (_bad(dim=-1), "dim"),
    "dim out of range": (_bad(dim=4), "dim"),
    "dim out of range (negative)": (_bad(dim=-5), "dim"),
    "D not divisible by S": (_bad(num_segments=3), "num_segments"),
    "num_segments zero": (_bad(num_segments=0), "num_segments"),
    "compress_weight wrong D": (_bad(compress_weight=lambda t: t[:, :6]), "compress_weight"),
    "compress_weight rank": (_bad(compress_weight=lambda t: t[0]), "compress_weight"),
    "compress_weight not S*d": (_bad(compress_weight=lambda t: t[:3]), "compress_weight"),
    "compress_bias wrong size": (_bad(compress_bias=lambda t: t[:2]), "compress_bias"),
    "generate_weight wrong N": (_bad(generate_weight=lambda t: t[:9]), "generate_weight"),
    "generate_weight wrong d": (_bad(generate_weight=lambda t: torch.cat([t, t], 1)),
                                "generate_weight"),
    "generate_bias wrong size": (_bad(generate_bias=lambda t: t[:5]), "generate_bias"),
    "mixed dtype": (_bad(generate_weight=lambda t: t.double()), "generate_weight"),
    "mixed dtype bias": (_bad(compress_bias=lambda t: t.double()), "compress_bias"),
    "mixed device": (_bad(compress_weight=lambda t: t.to("meta")), "compress_weight"),
}


def bad_inputs():
    """(argument named in the error, call) for each of BAD_INPUTS."""
    return [(name, list(kwargs.values())) for kwargs, name in BAD_INPUTS.values()]


BAD_GRAD_OUTS = {"shape": torch.zeros(2, 4, 6, 7)}

# (saved tensor, id, what spoils it) for dynamixer_backward on valid_args(): what
# _dynamixer_forward keeps, compressed (B', S, N*d) and weights (B', S, N*N)
BAD_SAVED = [
    (name, bad, spoil)
    for name in ("compressed", "weights")
    for bad, spoil in [("narrow", lambda z: z[:, :, :-1]), ("rank", lambda z: z.flatten(1)),
                       ("dtype", lambda z: z.double())]
]


def _compressed(args):
    """What spec 2.1 step 1 makes of x: (B', S, N*d), [b', s, i*d + k] the k-th feature of
    segment s of token i of sequence b' (written here from the reference's regrouping)."""
    x, compress_weight, compress_bias, _, _, num_segments, dim = args
    tokens = x.movedim(dim, -2)
    z = torch.nn.functional.linear(tokens.reshape(-1, *tokens.shape[-2:]), compress_weight,
                                   compress_bias)
    return rearrange(z, "b n (s k) -> b s (n k)", s=num_segments)


def _weights(args):
    """What spec 2.1 steps 2-3 make of Z: the softmax over input tokens i of the logits,
    (B', S, N*N), [b', s, i*N + j] the weight of input token i in output token j."""
    _, _, _, generate_weight, generate_bias, _, dim = args
    n = args[0].shape[dim]
    logits = torch.nn.functional.linear(_compressed(args), generate_weight, generate_bias)
    weights = rearrange(logits, "b s (i j) -> b s i j", i=n).softmax(dim=-2)
    return rearrange(weights, "b s i j -> b s (i j)")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_keeps_the_compressed_input_and_the_weights(dtype):
    torch.manual_seed(6)
    for args in sample_inputs(dtype):
        out, compressed, weights = torch.ops.mlpmix._dynamixer_forward(*args)
        assert_close(out, ops.dynamixer(*args), **TOLERANCES[dtype])
        assert_close(compressed, _compressed(args), **TOLERANCES[dtype])
        assert_close(weights, _weights(args), **TOLERANCES[dtype])


def test_backward_reads_the_kept_weights():
    # Given uniform weights (not the forward's) and a zero compression weight, so that no
    # gradient reaches x through the compression, grad_x is the mean of grad_out over the
    # tokens: the kept weights are used, not recomputed.
    args = make_args((2, 4, 6, 8), 4, 1, 1, torch.float64)
    args[1] = torch.zeros_like(args[1])
    out, compressed, weights = torch.ops.mlpmix._dynamixer_forward(*args)
    uniform = torch.full_like(weights, 1 / 4)
    grad_out = torch.randn_like(out)
    grad_x = torch.ops.mlpmix.dynamixer_backward(grad_out, *args, compressed, uniform)[0]
    assert_close(grad_x, grad_out.mean(dim=1, keepdim=True).expand_as(grad_out))


def test_expanded_input_reads_in_place():
    torch.manual_seed(5)
    args = make_args((1, 5, 12), 3, 2, 1, torch.float64)
    args[0] = args[0].expand(4, 5, 12)  # stride 0 over the batch
    assert_close(ops.dynamixer(*args), reference.dynamixer(*args))


def test_output_is_contiguous_and_input_untouched():
    args = make_args((2, 4, 6, 8), 4, 1, 1, torch.float32, layout=transposed)
    before = args[0].clone()
    out = ops.dynamixer(*args)
    assert out.is_contiguous()
    assert torch.equal(args[0], before)


def test_empty_batch():
    args = make_args((0, 5, 12), 3, 2, -2, torch.float32, requires_grad=True)
    out = ops.dynamixer(*args)
    assert out.shape == (0, 5, 12)
    out.sum().backward()
    assert args[1].grad is not None and torch.count_nonzero(args[1].grad) == 0


def test_multithreaded_result_equals_single_threaded():
    args = make_args((16, 8, 8, 16), 4, 2, 2, torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = ops.dynamixer(*args)
        torch.set_num_threads(2)
        multi = ops.dynamixer(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(multi, single)


def test_error_message_shows_expected_and_actual_shape():
    kwargs, _ = BAD_INPUTS["compress_weight wrong D"]
    with pytest.raises(RuntimeError, match=r"\(S\*d, D\) = \[4, 8\], got \[4, 6\]"):
        ops.dynamixer(**kwargs)


def test_library_is_registered():
    assert hasattr(torch.ops.mlpmix, "dynamixer")
    assert "cpu" in mlpmix.build_info()["backends"]
