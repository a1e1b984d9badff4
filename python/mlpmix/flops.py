"""FLOP formulas of the mlpmix ops for ``torch.utils.flop_counter.FlopCounterMode``, and
:func:`count_macs`.

FlopCounterMode sees a custom op as one call and cannot look inside it; importing mlpmix
registers a formula for every op of ``torch.ops.mlpmix`` (the public ops, the internal
forwards that keep tensors for the backward, and the backward ops). Each counts the op's
mathematical work exactly as FlopCounterMode counts the op's :mod:`mlpmix.reference` at the
same shapes: 2 FLOPs per multiply-accumulate of the matrix products, nothing for the
elementwise work (LayerNorm, GELU, softmax, biases, sums). A backward op counts what the
reference's backward counts: one product per operand of each forward product (the gradient
of each side), so twice the forward; the kernels' recomputation of a forward product when
the backward is not given the forward's kept tensors is not counted.
"""

from __future__ import annotations

import itertools
from math import prod
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

__all__ = ["count_macs"]


def _product(rows: int, inner: int, cols: int) -> int:
    """FlopCounterMode's count of a ``(rows, inner) @ (inner, cols)`` product."""
    return 2 * rows * inner * cols


def _dynamixer(x, compress_weight, compress_bias, generate_weight, generate_bias,
               num_segments, dim=-2, *_, **__) -> int:
    tokens, n = prod(x[:-1]), x[dim]
    samples = tokens // n if n else 0  # the B' sequences of N tokens
    return (_product(tokens, x[-1], compress_weight[0])  # compress
            + _product(samples * num_segments, generate_weight[1], generate_weight[0])  # generate
            + _product(samples * n, n, x[-1]))  # each output token mixes N input tokens


def _mlp_on_rows(elements: int, row_width: int, hidden: int) -> int:
    """``fc2(GELU(fc1(row)))`` of width ``row_width -> hidden -> row_width`` on every row of
    a tensor of ``elements`` elements."""
    rows = elements // row_width if row_width else 0
    return 2 * _product(rows, row_width, hidden)


def _raft_token_mixing(x, norm_weight, norm_bias, fc1_weight, *_, **__) -> int:
    # the rows of r*N features regroup all of x's elements
    return _mlp_on_rows(prod(x), fc1_weight[1], fc1_weight[0])


def _channel_mlp(x, norm_weight, norm_bias, fc1_weight, *_, **__) -> int:
    return _mlp_on_rows(prod(x), x[-1], fc1_weight[0])


def _cross_scale_embed(x, weight, bias, kernel_sizes, *_, **__) -> int:
    # The reference projects each token's concatenated windows of every kernel size (the
    # weight's columns), as the papers count; the kernels compute one convolution with the
    # largest kernel, which makes fewer products.
    stride = min(kernel_sizes)
    tokens = x[0] * (x[2] // stride) * (x[3] // stride)
    return _product(tokens, weight[1], weight[0])


def _linear(x, weight, *_, **__) -> int:
    return _product(prod(x[:-1]), x[-1], weight[0])


def _reweight_branches(h, w, c, fc1_weight, fc1_bias, fc2_weight, *_, **__) -> int:
    # the MLP runs on the token mean of each sample, not on every token
    samples = h[0]
    return (_product(samples, fc1_weight[1], fc1_weight[0])
            + _product(samples, fc2_weight[1], fc2_weight[0]))


def _cross_scale_embed_backward(grad_out, x, weight, bias, kernel_sizes, x_grad=True,
                                *_, **__) -> int:
    # x_grad=False (the images of the first level): the weight's gradient only
    return (2 if x_grad else 1) * _cross_scale_embed(x, weight, bias, kernel_sizes)


def _backward_of(forward: Callable[..., int]) -> Callable[..., int]:
    """The formula of ``<op>_backward(grad_out, <op's arguments>, ...)``: the gradient of both
    operands of every product of the forward."""
    def backward(grad_out, *args, **kwargs) -> int:
        return 2 * forward(*args, **kwargs)
    return backward


def _register() -> None:
    ops = torch.ops.mlpmix
    forwards = {
        "dynamixer": _dynamixer,
        "raft_token_mixing": _raft_token_mixing,
        "channel_mlp": _channel_mlp,
        "cross_scale_embed": _cross_scale_embed,
        "linear": _linear,
        "reweight_branches": _reweight_branches,
    }
    for name, forward in forwards.items():
        # with the internal forward that also returns the tensors the backward keeps
        saving = getattr(ops, f"_{name}_forward", None)
        register_flop_formula([getattr(ops, name)] + ([saving] if saving else []))(forward)
        backward = (_cross_scale_embed_backward if name == "cross_scale_embed"
                    else _backward_of(forward))
        register_flop_formula(getattr(ops, f"{name}_backward"))(backward)


def _baddbmm(self, batch1, batch2, *_, **__) -> int:
    return _product(batch1[0] * batch1[1], batch1[2], batch2[2])


def _register_in_place_baddbmm() -> None:
    """FlopCounterMode counts ``baddbmm`` but not the in-place ``baddbmm_``, with which the
    fused DynaMixer's folded first stage accumulates its branches (4% of DynaMixer-S's
    MACs)."""
    if torch.ops.aten.baddbmm_ not in flop_registry:
        register_flop_formula(torch.ops.aten.baddbmm_)(_baddbmm)


_register()
_register_in_place_baddbmm()


def count_macs(model: nn.Module, input_size: Optional[Sequence[int]] = None,
               batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``batch`` inputs of
    ``input_size`` (default: ``model.pretrained_cfg["input_size"]``, e.g. ``(3, 224, 224)``).

    Counted by ``FlopCounterMode`` (FLOPs / 2) on the meta device: nothing is computed and
    ``model`` is left as it is. The ops run through the current implementation
    (:mod:`mlpmix.implementation`): the fused ops by default, the reference under
    ``implementation.use("reference")``.
    """
    if input_size is None:
        cfg = getattr(model, "pretrained_cfg", None)
        if cfg is None:
            raise ValueError(f"count_macs: input_size is required for a {type(model).__name__}, "
                             "which has no pretrained_cfg")
        input_size = cfg["input_size"]
    if batch < 1:
        raise ValueError(f"count_macs: batch must be at least 1, got {batch}")
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    on_meta = {name: torch.empty_like(t, device="meta") for name, t in tensors}
    images = torch.empty(batch, *input_size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        torch.func.functional_call(model, on_meta, (images,))
    return counter.get_total_flops() // 2
