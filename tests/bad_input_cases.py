"""The table of bad and odd inputs for every op, forward and backward (issue: reliability).

Each case is a function returning (callable, args); `run_case` runs one in a child process
(so a crash is a failed test, not a dead test run) and reports what happened.

Expectations: ("raises", argument) — a RuntimeError whose message starts by naming the
argument; ("propagates",) — no error and the non-finite input shows up in the output;
("ok", shape) — a result of that shape.
"""

from __future__ import annotations

import traceback

import torch

import mlpmix  # noqa: F401  (registers the ops)

F32 = torch.float32
ops = torch.ops.mlpmix


def _dynamixer(x=None, cw=None, cb=None, gw=None, gb=None, s=4, dim=1, n=4, d=1, dtype=F32):
    x = torch.randn(2, n, 6, 8, dtype=dtype) if x is None else x
    return ops.dynamixer, [
        x,
        torch.randn(s * d, 8, dtype=dtype) if cw is None else cw,
        torch.randn(s * d, dtype=dtype) if cb is None else cb,
        torch.randn(n * n, n * d, dtype=dtype) if gw is None else gw,
        torch.randn(n * n, dtype=dtype) if gb is None else gb,
        s, dim]


def _raft(x=None, nw=None, nb=None, w1=None, b1=None, w2=None, b2=None, r=2, dim=1, dtype=F32):
    x = torch.randn(2, 3, 4, 6, dtype=dtype) if x is None else x
    f = r * 3
    return ops.raft_token_mixing, [
        x,
        torch.randn(6, dtype=dtype) if nw is None else nw,
        torch.randn(6, dtype=dtype) if nb is None else nb,
        torch.randn(2 * f, f, dtype=dtype) if w1 is None else w1,
        torch.randn(2 * f, dtype=dtype) if b1 is None else b1,
        torch.randn(f, 2 * f, dtype=dtype) if w2 is None else w2,
        torch.randn(f, dtype=dtype) if b2 is None else b2,
        r, dim, 1e-5]


def _channel(x=None, nw=None, nb=None, w1=None, b1=None, w2=None, b2=None, c=6, hidden=12,
             dtype=F32):
    x = torch.randn(2, 3, 4, c, dtype=dtype) if x is None else x
    return ops.channel_mlp, [
        x,
        torch.randn(c, dtype=dtype) if nw is None else nw,
        torch.randn(c, dtype=dtype) if nb is None else nb,
        torch.randn(hidden, c, dtype=dtype) if w1 is None else w1,
        torch.randn(hidden, dtype=dtype) if b1 is None else b1,
        torch.randn(c, hidden, dtype=dtype) if w2 is None else w2,
        torch.randn(c, dtype=dtype) if b2 is None else b2,
        1e-5]


def _embed(x=None, w=None, b=None, ks=(2, 4), dtype=F32):
    x = torch.randn(2, 3, 8, 8, dtype=dtype) if x is None else x
    features = x.shape[1] * sum(k * k for k in ks) if x.dim() == 4 else 60
    return ops.cross_scale_embed, [
        x,
        torch.randn(5, features, dtype=dtype) if w is None else w,
        torch.randn(5, dtype=dtype) if b is None else b,
        list(ks)]


def _linear(x=None, w=None, b=None, features=8, out=5, dtype=F32):
    x = torch.randn(2, 3, features, dtype=dtype) if x is None else x
    return ops.linear, [
        x,
        torch.randn(out, features, dtype=dtype) if w is None else w,
        torch.randn(out, dtype=dtype) if b is None else b]


def _reweight(h=None, w=None, c=None, w1=None, b1=None, w2=None, b2=None, d=8, hidden=2,
              dtype=F32):
    h = torch.randn(2, 3, 4, d, dtype=dtype) if h is None else h
    return ops.reweight_branches, [
        h,
        torch.randn(h.shape, dtype=dtype) if w is None else w,
        torch.randn(h.shape, dtype=dtype) if c is None else c,
        torch.randn(hidden, d, dtype=dtype) if w1 is None else w1,
        torch.randn(hidden, dtype=dtype) if b1 is None else b1,
        torch.randn(3 * d, hidden, dtype=dtype) if w2 is None else w2,
        torch.randn(3 * d, dtype=dtype) if b2 is None else b2]


def _backward(forward_case, grad_out=None):
    """The op's backward with a grad_out shaped like the forward output (or `grad_out`)."""
    op, args = forward_case
    out = op(*args)
    backward = getattr(ops, op._qualified_op_name.split("::")[1] + "_backward")
    return backward, [torch.randn_like(out) if grad_out is None else grad_out(out), *args]


def _dynamixer_forward(**kwargs):
    """_dynamixer_forward: the forward that also returns the compressed input and weights."""
    return ops._dynamixer_forward, _dynamixer(**kwargs)[1]


def _dynamixer_backward_with_kept(compressed=lambda z: z, weights=lambda p: p):
    """dynamixer_backward given (functions of) the compressed input and weights the forward
    kept."""
    args = _dynamixer()[1]
    out, kept_compressed, kept_weights = ops._dynamixer_forward(*args)
    return ops.dynamixer_backward, [torch.randn_like(out), *args, compressed(kept_compressed),
                                    weights(kept_weights)]


def _raft_forward(**kwargs):
    """_raft_token_mixing_forward: the forward that also returns fc1's pre-activation."""
    return ops._raft_token_mixing_forward, _raft(**kwargs)[1]


def _raft_backward_with_hidden(hidden=lambda h: h):
    """raft_token_mixing_backward given (a function of) the hidden the forward kept."""
    args = _raft()[1]
    out, kept = ops._raft_token_mixing_forward(*args)
    return ops.raft_token_mixing_backward, [torch.randn_like(out), *args, hidden(kept)]


def _channel_on_threads(threads, **kwargs):
    """_channel(**kwargs) run with `threads` threads (the child process keeps the setting)."""
    torch.set_num_threads(threads)
    return _channel(**kwargs)


def _channel_forward(**kwargs):
    """_channel_mlp_forward: the forward that also returns fc1's pre-activation (T, hidden)."""
    return ops._channel_mlp_forward, _channel(**kwargs)[1]


def _channel_backward(**kwargs):
    """channel_mlp_backward on the arguments of _channel(**kwargs), grad_out shaped like x."""
    args = _channel(**kwargs)[1]
    return ops.channel_mlp_backward, [torch.randn_like(args[0], dtype=F32), *args]


def _channel_backward_with_hidden(hidden=lambda h: h):
    """channel_mlp_backward given (a function of) the hidden the forward kept."""
    args = _channel()[1]
    out, kept = ops._channel_mlp_forward(*args)
    return ops.channel_mlp_backward, [torch.randn_like(out), *args, hidden(kept)]


def _nan_at_first(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def _with_nonfinite(case, value):
    op, args = case
    args[0] = args[0].clone()
    args[0].view(-1)[0] = value
    return op, args


def _replaced(case, index, value):
    op, args = case
    args[index] = value
    return op, args


def _int(t):
    return t.to(torch.int32)


CASES = {
    # dynamixer
    "dynamixer/x rank 2": (lambda: _dynamixer(x=torch.randn(4, 8), dim=0), ("raises", "x")),
    "dynamixer/x int": (lambda: _dynamixer(x=_int(torch.randn(2, 4, 6, 8))), ("raises", "x")),
    "dynamixer/x bool": (lambda: _dynamixer(x=torch.ones(2, 4, 6, 8, dtype=torch.bool)), ("raises", "x")),
    "dynamixer/x complex": (lambda: _dynamixer(x=torch.randn(2, 4, 6, 8, dtype=torch.complex64)), ("raises", "x")),
    # float16/bfloat16 run on the CPU too, every argument in the same dtype
    "dynamixer/x float16 on CPU": (lambda: _dynamixer(dtype=torch.float16), ("ok", (2, 4, 6, 8))),
    "dynamixer/x float16, weights float32": (lambda: _dynamixer(x=torch.randn(2, 4, 6, 8, dtype=torch.float16)), ("raises", "compress_weight")),
    "dynamixer/compress_weight size": (lambda: _dynamixer(cw=torch.randn(4, 7)), ("raises", "compress_weight")),
    "dynamixer/compress_bias size": (lambda: _dynamixer(cb=torch.randn(3)), ("raises", "compress_bias")),
    "dynamixer/generate_weight size": (lambda: _dynamixer(gw=torch.randn(15, 4)), ("raises", "generate_weight")),
    "dynamixer/generate_bias size": (lambda: _dynamixer(gb=torch.randn(15)), ("raises", "generate_bias")),
    "dynamixer/segments do not divide D": (lambda: _dynamixer(s=3, cw=torch.randn(3, 8), cb=torch.randn(3)), ("raises", "num_segments")),
    "dynamixer/mixed dtype": (lambda: _dynamixer(gw=torch.randn(16, 4, dtype=torch.float64)), ("raises", "generate_weight")),
    "dynamixer/mixed device": (lambda: _dynamixer(cw=torch.randn(4, 8, device="meta")), ("raises", "compress_weight")),
    "dynamixer/dim out of range": (lambda: _dynamixer(dim=4), ("raises", "dim")),
    "dynamixer/dim is channels": (lambda: _dynamixer(dim=-1), ("raises", "dim")),
    "dynamixer/zero tokens": (lambda: _dynamixer(x=torch.randn(2, 0, 6, 8), n=0), ("raises", "x")),
    "dynamixer/empty batch": (lambda: _dynamixer(x=torch.randn(0, 4, 6, 8)), ("ok", (0, 4, 6, 8))),
    "dynamixer/NaN": (lambda: _with_nonfinite(_dynamixer(), float("nan")), ("propagates",)),
    "dynamixer/inf": (lambda: _with_nonfinite(_dynamixer(), float("inf")), ("propagates",)),
    # N*N = 2**32 does not fit 32 bits: the expected shape must still be computed right
    "dynamixer/N*N past 2**31": (lambda: _dynamixer(x=torch.randn(1, 65536, 8), dim=1, n=1,
                                                    gw=torch.randn(1, 1), gb=torch.randn(1)),
                                 ("raises", "generate_weight", "4294967296")),
    "dynamixer_backward/grad_out shape": (lambda: _backward(_dynamixer(), lambda o: o[:, :-1]), ("raises", "grad_out")),
    "dynamixer_backward/grad_out dtype": (lambda: _backward(_dynamixer(), lambda o: o.double()), ("raises", "grad_out")),
    "dynamixer_backward/NaN": (lambda: _with_nonfinite(_backward(_dynamixer()), float("nan")), ("propagates",)),
    "dynamixer_backward/compressed shape": (lambda: _dynamixer_backward_with_kept(compressed=lambda z: z[:, :, :-1]), ("raises", "compressed")),
    "dynamixer_backward/compressed dtype": (lambda: _dynamixer_backward_with_kept(compressed=lambda z: z.double()), ("raises", "compressed")),
    "dynamixer_backward/compressed NaN": (lambda: _dynamixer_backward_with_kept(compressed=_nan_at_first), ("propagates",)),
    "dynamixer_backward/weights shape": (lambda: _dynamixer_backward_with_kept(weights=lambda p: p[:, :-1]), ("raises", "weights")),
    "dynamixer_backward/weights dtype": (lambda: _dynamixer_backward_with_kept(weights=lambda p: p.double()), ("raises", "weights")),
    "dynamixer_backward/weights device": (lambda: _dynamixer_backward_with_kept(weights=lambda p: p.to("meta")), ("raises", "weights")),
    "dynamixer_backward/weights NaN": (lambda: _dynamixer_backward_with_kept(weights=_nan_at_first), ("propagates",)),
    "_dynamixer_forward/x rank 2": (lambda: _dynamixer_forward(x=torch.randn(4, 8)), ("raises", "x")),
    "_dynamixer_forward/generate_weight size": (lambda: _dynamixer_forward(gw=torch.randn(16, 3)), ("raises", "generate_weight")),
    "_dynamixer_forward/empty batch": (lambda: _dynamixer_forward(x=torch.randn(0, 4, 6, 8)), ("ok", (0, 4, 6, 8))),
    "_dynamixer_forward/NaN": (lambda: _with_nonfinite(_dynamixer_forward(), float("nan")), ("propagates",)),
    # raft_token_mixing
    "raft_token_mixing/x rank 3": (lambda: _raft(x=torch.randn(3, 4, 6)), ("raises", "x")),
    "raft_token_mixing/x int": (lambda: _raft(x=_int(torch.randn(2, 3, 4, 6))), ("raises", "x")),
    "raft_token_mixing/x complex": (lambda: _raft(x=torch.randn(2, 3, 4, 6, dtype=torch.complex64)), ("raises", "x")),
    "raft_token_mixing/x bfloat16 on CPU": (lambda: _raft(dtype=torch.bfloat16), ("ok", (2, 3, 4, 6))),
    "raft_token_mixing/x bfloat16, weights float32": (lambda: _raft(x=torch.randn(2, 3, 4, 6, dtype=torch.bfloat16)), ("raises", "norm_weight")),
    "raft_token_mixing/raft_size does not divide C": (lambda: _raft(r=4), ("raises", "raft_size")),
    "raft_token_mixing/norm_weight size": (lambda: _raft(nw=torch.randn(5)), ("raises", "norm_weight")),
    "raft_token_mixing/norm_bias dtype": (lambda: _raft(nb=torch.randn(6, dtype=torch.float64)), ("raises", "norm_bias")),
    "raft_token_mixing/fc1_weight size": (lambda: _raft(w1=torch.randn(12, 5)), ("raises", "fc1_weight")),
    "raft_token_mixing/fc1_bias size": (lambda: _raft(b1=torch.randn(11)), ("raises", "fc1_bias")),
    "raft_token_mixing/fc2_weight size": (lambda: _raft(w2=torch.randn(5, 12)), ("raises", "fc2_weight")),
    "raft_token_mixing/fc2_bias device": (lambda: _raft(b2=torch.randn(6, device="meta")), ("raises", "fc2_bias")),
    "raft_token_mixing/dim out of range": (lambda: _raft(dim=5), ("raises", "dim")),
    "raft_token_mixing/dim is channels": (lambda: _raft(dim=3), ("raises", "dim")),
    "raft_token_mixing/empty batch": (lambda: _raft(x=torch.randn(0, 3, 4, 6)), ("ok", (0, 3, 4, 6))),
    "raft_token_mixing/NaN": (lambda: _with_nonfinite(_raft(), float("nan")), ("propagates",)),
    "raft_token_mixing/inf": (lambda: _with_nonfinite(_raft(), float("inf")), ("propagates",)),
    "raft_token_mixing_backward/grad_out shape": (lambda: _backward(_raft(), lambda o: o[..., :-1]), ("raises", "grad_out")),
    "raft_token_mixing_backward/NaN": (lambda: _with_nonfinite(_backward(_raft()), float("nan")), ("propagates",)),
    "raft_token_mixing_backward/hidden shape": (lambda: _raft_backward_with_hidden(lambda h: h[:, :, :-1]), ("raises", "hidden")),
    "raft_token_mixing_backward/hidden dtype": (lambda: _raft_backward_with_hidden(lambda h: h.double()), ("raises", "hidden")),
    "raft_token_mixing_backward/hidden NaN": (lambda: _raft_backward_with_hidden(_nan_at_first), ("propagates",)),
    "_raft_token_mixing_forward/x rank 3": (lambda: _raft_forward(x=torch.randn(3, 4, 6)), ("raises", "x")),
    "_raft_token_mixing_forward/fc1_weight size": (lambda: _raft_forward(w1=torch.randn(12, 5)), ("raises", "fc1_weight")),
    "_raft_token_mixing_forward/empty batch": (lambda: _raft_forward(x=torch.randn(0, 3, 4, 6)), ("ok", (0, 3, 4, 6))),
    "_raft_token_mixing_forward/NaN": (lambda: _with_nonfinite(_raft_forward(), float("nan")), ("propagates",)),
    # channel_mlp
    "channel_mlp/x 0-dim": (lambda: _channel(x=torch.tensor(1.0)), ("raises", "x")),
    "channel_mlp/x int": (lambda: _channel(x=_int(torch.randn(2, 3, 4, 6))), ("raises", "x")),
    "channel_mlp/x bool": (lambda: _channel(x=torch.ones(2, 3, 4, 6, dtype=torch.bool)), ("raises", "x")),
    "channel_mlp/x complex": (lambda: _channel(x=torch.randn(2, 3, 4, 6, dtype=torch.complex64)), ("raises", "x")),
    "channel_mlp/x bfloat16 on CPU": (lambda: _channel(dtype=torch.bfloat16), ("ok", (2, 3, 4, 6))),
    "channel_mlp/x float16 on CPU": (lambda: _channel(dtype=torch.float16), ("ok", (2, 3, 4, 6))),
    "channel_mlp/x float16, weights bfloat16": (lambda: _channel(x=torch.randn(2, 3, 4, 6, dtype=torch.float16), nw=torch.randn(6, dtype=torch.bfloat16)), ("raises", "norm_weight")),
    # C = 0 with every weight agreeing: still rejected, naming x
    "channel_mlp/x without channels": (lambda: _channel(x=torch.randn(2, 3, 4, 0), c=0), ("raises", "x")),
    "channel_mlp/norm_weight size": (lambda: _channel(nw=torch.randn(5)), ("raises", "norm_weight")),
    "channel_mlp/norm_weight rank": (lambda: _channel(nw=torch.randn(1, 6)), ("raises", "norm_weight")),
    "channel_mlp/norm_bias size": (lambda: _channel(nb=torch.randn(7)), ("raises", "norm_bias")),
    "channel_mlp/norm_bias dtype": (lambda: _channel(nb=torch.randn(6, dtype=torch.float64)), ("raises", "norm_bias")),
    "channel_mlp/fc1_weight size": (lambda: _channel(w1=torch.randn(12, 5)), ("raises", "fc1_weight")),
    "channel_mlp/fc1_weight rank": (lambda: _channel(w1=torch.randn(12 * 6)), ("raises", "fc1_weight")),
    "channel_mlp/fc1_bias size": (lambda: _channel(b1=torch.randn(11)), ("raises", "fc1_bias")),
    "channel_mlp/fc2_weight size": (lambda: _channel(w2=torch.randn(5, 12)), ("raises", "fc2_weight")),
    "channel_mlp/fc2_weight hidden": (lambda: _channel(w2=torch.randn(6, 11)), ("raises", "fc2_weight")),
    "channel_mlp/fc2_weight transposed": (lambda: _channel(w2=torch.randn(12, 6)), ("raises", "fc2_weight")),
    "channel_mlp/fc2_bias size": (lambda: _channel(b2=torch.randn(5)), ("raises", "fc2_bias")),
    "channel_mlp/mixed dtype": (lambda: _channel(w2=torch.randn(6, 12, dtype=torch.float64)), ("raises", "fc2_weight")),
    "channel_mlp/mixed device": (lambda: _channel(b1=torch.randn(12, device="meta")), ("raises", "fc1_bias")),
    "channel_mlp/fc2_bias device": (lambda: _channel(b2=torch.randn(6, device="meta")), ("raises", "fc2_bias")),
    "channel_mlp/empty batch": (lambda: _channel(x=torch.randn(0, 3, 4, 6)), ("ok", (0, 3, 4, 6))),
    "channel_mlp/zero tokens rank 2": (lambda: _channel(x=torch.randn(0, 6)), ("ok", (0, 6))),
    "channel_mlp/rank 1": (lambda: _channel(x=torch.randn(6)), ("ok", (6,))),
    # a 64-thread machine: 800 tokens are more tiles than one per thread would need
    "channel_mlp/64 threads": (lambda: _channel_on_threads(64, x=torch.randn(800, 6)), ("ok", (800, 6))),
    "channel_mlp/NaN": (lambda: _with_nonfinite(_channel(), float("nan")), ("propagates",)),
    "channel_mlp/inf": (lambda: _with_nonfinite(_channel(), float("inf")), ("propagates",)),
    "channel_mlp_backward/grad_out shape": (lambda: _backward(_channel(), lambda o: o[..., :-1]), ("raises", "grad_out")),
    "channel_mlp_backward/grad_out dtype": (lambda: _backward(_channel(), lambda o: o.double()), ("raises", "grad_out")),
    "channel_mlp_backward/grad_out device": (lambda: _backward(_channel(), lambda o: o.to("meta")), ("raises", "grad_out")),
    "channel_mlp_backward/x int": (lambda: _channel_backward(x=_int(torch.randn(2, 3, 4, 6))), ("raises", "x")),
    "channel_mlp_backward/fc1_weight size": (lambda: _channel_backward(w1=torch.randn(12, 5)), ("raises", "fc1_weight")),
    "channel_mlp_backward/fc2_bias size": (lambda: _channel_backward(b2=torch.randn(5)), ("raises", "fc2_bias")),
    "channel_mlp_backward/empty batch": (lambda: _channel_backward(x=torch.randn(0, 3, 4, 6)), ("ok", (0, 3, 4, 6))),
    "channel_mlp_backward/NaN": (lambda: _with_nonfinite(_backward(_channel()), float("nan")), ("propagates",)),
    "channel_mlp_backward/hidden shape": (lambda: _channel_backward_with_hidden(lambda h: h[:, :-1]), ("raises", "hidden")),
    "channel_mlp_backward/hidden tokens": (lambda: _channel_backward_with_hidden(lambda h: h[:-1]), ("raises", "hidden")),
    "channel_mlp_backward/hidden dtype": (lambda: _channel_backward_with_hidden(lambda h: h.double()), ("raises", "hidden")),
    "channel_mlp_backward/hidden device": (lambda: _channel_backward_with_hidden(lambda h: h.to("meta")), ("raises", "hidden")),
    "channel_mlp_backward/hidden NaN": (lambda: _channel_backward_with_hidden(_nan_at_first), ("propagates",)),
    "_channel_mlp_forward/x 0-dim": (lambda: _channel_forward(x=torch.tensor(1.0)), ("raises", "x")),
    "_channel_mlp_forward/x without channels": (lambda: _channel_forward(x=torch.randn(2, 3, 4, 0), c=0), ("raises", "x")),
    "_channel_mlp_forward/fc1_weight size": (lambda: _channel_forward(w1=torch.randn(12, 5)), ("raises", "fc1_weight")),
    "_channel_mlp_forward/empty batch": (lambda: _channel_forward(x=torch.randn(0, 3, 4, 6)), ("ok", (0, 3, 4, 6))),
    "_channel_mlp_forward/NaN": (lambda: _with_nonfinite(_channel_forward(), float("nan")), ("propagates",)),
    # cross_scale_embed
    "cross_scale_embed/x rank 3": (lambda: _embed(x=torch.randn(3, 8, 8)), ("raises", "x")),
    "cross_scale_embed/x int": (lambda: _embed(x=_int(torch.randn(2, 3, 8, 8))), ("raises", "x")),
    "cross_scale_embed/x complex": (lambda: _embed(x=torch.randn(2, 3, 8, 8, dtype=torch.complex64)), ("raises", "x")),
    "cross_scale_embed/x float16 on CPU": (lambda: _embed(dtype=torch.float16), ("ok", (2, 4, 4, 5))),
    "cross_scale_embed/H not a multiple of s": (lambda: _embed(x=torch.randn(2, 3, 7, 8)), ("raises", "x")),
    "cross_scale_embed/k not a multiple of s": (lambda: _embed(ks=(2, 3)), ("raises", "kernel_sizes")),
    "cross_scale_embed/k - s odd": (lambda: _embed(ks=(2, 6, 5)), ("raises", "kernel_sizes")),
    "cross_scale_embed/no kernels": (lambda: _embed(ks=(), w=torch.randn(5, 1)), ("raises", "kernel_sizes")),
    "cross_scale_embed/zero kernel": (lambda: _embed(ks=(0, 2)), ("raises", "kernel_sizes")),
    "cross_scale_embed/weight size": (lambda: _embed(w=torch.randn(5, 59)), ("raises", "weight")),
    "cross_scale_embed/bias size": (lambda: _embed(b=torch.randn(4)), ("raises", "bias")),
    "cross_scale_embed/mixed dtype": (lambda: _embed(w=torch.randn(5, 60, dtype=torch.float64)), ("raises", "weight")),
    "cross_scale_embed/mixed device": (lambda: _embed(b=torch.randn(5, device="meta")), ("raises", "bias")),
    "cross_scale_embed/empty batch": (lambda: _embed(x=torch.randn(0, 3, 8, 8)), ("ok", (0, 4, 4, 5))),
    "cross_scale_embed/NaN": (lambda: _with_nonfinite(_embed(), float("nan")), ("propagates",)),
    "cross_scale_embed/inf": (lambda: _with_nonfinite(_embed(), float("inf")), ("propagates",)),
    "cross_scale_embed_backward/grad_out shape": (lambda: _backward(_embed(), lambda o: o[:, :-1]), ("raises", "grad_out")),
    "cross_scale_embed_backward/NaN": (lambda: _with_nonfinite(_backward(_embed()), float("nan")), ("propagates",)),
    # linear
    "linear/x 0-dim": (lambda: _linear(x=torch.tensor(1.0)), ("raises", "x")),
    "linear/x int": (lambda: _linear(x=_int(torch.randn(2, 3, 8))), ("raises", "x")),
    "linear/x bfloat16 on CPU": (lambda: _linear(dtype=torch.bfloat16), ("ok", (2, 3, 5))),
    "linear/x bfloat16, weight float32": (lambda: _linear(x=torch.randn(2, 3, 8, dtype=torch.bfloat16)), ("raises", "weight")),
    "linear/weight size": (lambda: _linear(w=torch.randn(5, 7)), ("raises", "weight")),
    "linear/weight rank": (lambda: _linear(w=torch.randn(40)), ("raises", "weight")),
    "linear/bias size": (lambda: _linear(b=torch.randn(4)), ("raises", "bias")),
    "linear/mixed dtype": (lambda: _linear(w=torch.randn(5, 8, dtype=torch.float64)), ("raises", "weight")),
    "linear/mixed device": (lambda: _linear(b=torch.randn(5, device="meta")), ("raises", "bias")),
    "linear/no rows": (lambda: _linear(x=torch.randn(0, 3, 8)), ("ok", (0, 3, 5))),
    "linear/no features": (lambda: _linear(x=torch.randn(2, 0), features=0), ("ok", (2, 5))),
    "linear/rank 1": (lambda: _linear(x=torch.randn(8)), ("ok", (5,))),
    "linear/NaN": (lambda: _with_nonfinite(_linear(), float("nan")), ("propagates",)),
    "linear/inf": (lambda: _with_nonfinite(_linear(), float("inf")), ("propagates",)),
    # large enough for oneDNN's float32 path
    "linear/NaN model size": (lambda: _with_nonfinite(_linear(x=torch.randn(512, 384), features=384, out=384), float("nan")), ("propagates",)),
    "linear_backward/grad_out shape": (lambda: _backward(_linear(), lambda o: o[..., :-1]), ("raises", "grad_out")),
    "linear_backward/grad_out dtype": (lambda: _backward(_linear(), lambda o: o.double()), ("raises", "grad_out")),
    "linear_backward/bias size": (lambda: (ops.linear_backward, _backward(_linear())[1][:3] + [torch.randn(4)]), ("raises", "bias")),
    "linear_backward/NaN": (lambda: _with_nonfinite(_backward(_linear()), float("nan")), ("propagates",)),
    # reweight_branches
    "reweight_branches/h rank 1": (lambda: _reweight(h=torch.randn(8)), ("raises", "h")),
    "reweight_branches/h int": (lambda: _reweight(h=_int(torch.randn(2, 3, 8)), w=torch.randn(2, 3, 8), c=torch.randn(2, 3, 8)), ("raises", "h")),
    "reweight_branches/h no tokens": (lambda: _reweight(h=torch.randn(2, 0, 8)), ("raises", "h", "at least one token")),
    "reweight_branches/w shape": (lambda: _reweight(w=torch.randn(2, 3, 4, 7)), ("raises", "w")),
    "reweight_branches/c dtype": (lambda: _reweight(c=torch.randn(2, 3, 4, 8, dtype=torch.float64)), ("raises", "c")),
    "reweight_branches/c device": (lambda: _reweight(c=torch.randn(2, 3, 4, 8, device="meta")), ("raises", "c")),
    "reweight_branches/fc1_weight size": (lambda: _reweight(w1=torch.randn(2, 7)), ("raises", "fc1_weight")),
    "reweight_branches/fc1_bias size": (lambda: _reweight(b1=torch.randn(3)), ("raises", "fc1_bias")),
    "reweight_branches/fc2_weight size": (lambda: _reweight(w2=torch.randn(16, 2)), ("raises", "fc2_weight")),
    "reweight_branches/fc2_bias size": (lambda: _reweight(b2=torch.randn(8)), ("raises", "fc2_bias")),
    "reweight_branches/no samples": (lambda: _reweight(h=torch.randn(0, 3, 4, 8)), ("ok", (0, 3, 4, 8))),
    "reweight_branches/rank 2": (lambda: _reweight(h=torch.randn(2, 8)), ("ok", (2, 8))),
    "reweight_branches/NaN": (lambda: _with_nonfinite(_reweight(), float("nan")), ("propagates",)),
    "reweight_branches/inf": (lambda: _with_nonfinite(_reweight(), float("inf")), ("propagates",)),
    "reweight_branches_backward/grad_out shape": (lambda: _backward(_reweight(), lambda o: o[..., :-1]), ("raises", "grad_out")),
    "reweight_branches_backward/grad_out dtype": (lambda: _backward(_reweight(), lambda o: o.double()), ("raises", "grad_out")),
    "reweight_branches_backward/w shape": (lambda: _replaced(_backward(_reweight()), 2, torch.randn(2, 3, 4, 7)), ("raises", "w")),
    "reweight_branches_backward/NaN": (lambda: _with_nonfinite(_backward(_reweight()), float("nan")), ("propagates",)),
}


def run_case(name: str, results) -> None:
    """Child process: runs CASES[name] and puts (kind, detail) on `results`."""
    try:
        op, args = CASES[name][0]()
        out = op(*args)
        outs = out if isinstance(out, tuple) else (out,)
        finite = all(bool(torch.isfinite(o).all()) for o in outs if o.numel())
        results.put(("returned", (tuple(outs[0].shape), finite)))
    except Exception as e:  # noqa: BLE001  (the parent judges the exception)
        results.put(("raised", (type(e).__name__, str(e).splitlines()[0], traceback.format_exc())))
