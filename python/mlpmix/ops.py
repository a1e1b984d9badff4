"""Typed, documented wrappers over the ``torch.ops.mlpmix`` operators.

Each wrapper calls the C++ operator through the dispatcher, so it works with autograd,
TorchScript, ``torch.compile`` and ``torch.export``; under
``mlpmix.implementation.use("reference")`` (or ``MLPMIX_IMPL=reference``) it runs
:mod:`mlpmix.reference` instead. The pure-PyTorch definitions of the same
functions are in :mod:`mlpmix.reference`.

Devices and dtypes: CPU takes float32 and float64; CUDA (a build with the CUDA kernels, see
docs/cuda.md) also float16 and bfloat16, accumulating in float32. All tensor arguments must
share the input's dtype and device. Under ``torch.autocast("cuda", dtype)`` every op follows
the policy of matmuls: its floating inputs (except float64) are cast to ``dtype`` and it
computes and returns ``dtype``; gradients flow back in the inputs' own dtype. The CUDA
kernels use no atomics, so they are deterministic; the cuBLAS and cuDNN calls inside follow
``torch.use_deterministic_algorithms`` like any PyTorch op.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from . import implementation, reference

__all__ = [
    "dynamixer",
    "raft_token_mixing",
    "channel_mlp",
    "cross_scale_embed",
    "linear",
    "reweight_branches",
]


@torch.jit.unused  # TorchScript checks the argument types itself
def check_weights(op: str, **weights: Optional[Tensor]) -> None:
    """Raises a RuntimeError naming ``op``'s argument when a weight is not a tensor, as the
    ``weight`` of a layer that ``torch.ao.quantization.quantize_dynamic`` made int8 is
    not (a method): the ops compute in floating point, int8 inference goes through ONNX."""
    for name, value in weights.items():
        if value is not None and not isinstance(value, Tensor):
            raise RuntimeError(
                f"mlpmix.{op}: {name} must be a Tensor, got {type(value).__name__} {value!r}. "
                "mlpmix's ops take floating-point weights, so torch.ao.quantization."
                "quantize_dynamic cannot make an mlpmix model int8; export it to ONNX "
                "quantized to int8 instead: `mlpmix export NAME --format onnx --int8 --out "
                "model.onnx` or mlpmix.export.onnx then mlpmix.export.quantize_int8")


def dynamixer(
    x: Tensor,
    compress_weight: Tensor,
    compress_bias: Optional[Tensor],
    generate_weight: Tensor,
    generate_bias: Optional[Tensor],
    num_segments: int,
    dim: int = -2,
) -> Tensor:
    """DynaMixer token mixing (spec section 2.1, steps 1-4), without the output projection.

    Args:
        x: channels-last input ``(..., D)`` with at least 3 dimensions; any strides.
        compress_weight: ``(S*d, D)``, compresses every token over all D channels.
        compress_bias: ``(S*d,)`` or None.
        generate_weight: ``(N*N, N*d)``, the generator shared by all S segments; output
            index ``i*N + j`` with i the input token and j the output token.
        generate_bias: ``(N*N,)`` or None.
        num_segments: S; D must be divisible by S. Segment s owns the contiguous channels
            ``[s*D/S, (s+1)*D/S)``.
        dim: the token axis N (not the last axis). ``(B, N, D)`` with ``dim=-2`` is the plain
            case; on ``(B, H, W, D)``, ``dim=1`` mixes along H and ``dim=2`` along W.

    Returns:
        A contiguous tensor shaped like ``x``: every output token is a convex combination
        (softmax over the input tokens) of the input tokens, per segment.
        Under ``torch.autocast("cuda", dtype)`` the op runs in ``dtype`` (the matmul policy,
        see the module docstring).
    """
    if not torch.jit.is_scripting():
        check_weights("dynamixer", compress_weight=compress_weight, compress_bias=compress_bias,
                      generate_weight=generate_weight, generate_bias=generate_bias)
    if not torch.jit.is_scripting() and implementation.use_reference():
        return reference.dynamixer(
            x, compress_weight, compress_bias, generate_weight, generate_bias, num_segments, dim
        )
    return torch.ops.mlpmix.dynamixer(
        x, compress_weight, compress_bias, generate_weight, generate_bias, num_segments, dim
    )


def raft_token_mixing(
    x: Tensor,
    norm_weight: Tensor,
    norm_bias: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    raft_size: int,
    dim: int,
    eps: float = 1e-5,
) -> Tensor:
    """Raft token mixing branch (spec section 1.1, steps 1-4 without the residual add).

    ``LayerNorm`` over C, regroup into rafts, ``fc2(GELU(fc1(.)))`` (exact GELU), ungroup.

    Args:
        x: channels-last input ``(B, H, W, C)``; any strides.
        norm_weight, norm_bias: ``(C,)``, the LayerNorm affine.
        fc1_weight: ``(hidden, r*N)`` with N = H for vertical and W for horizontal mixing;
            the hidden width is free (the published models use ``2*r*N``).
        fc1_bias: ``(hidden,)``.
        fc2_weight: ``(r*N, hidden)``; fc2_bias: ``(r*N,)``.
        raft_size: r, a divisor of C. Channel ``c = i*o + j`` (o = C/r) is position i of
            raft j: rafts are the strided channel sets ``{j, j+o, ...}``.
        dim: 1 (or -3) mixes along H, regrouping ``b h w (r o) -> b o w (r h)``;
            2 (or -2) mixes along W, ``b h w (r o) -> b o h (r w)``.
        eps: the LayerNorm epsilon.

    Returns:
        The branch, a contiguous tensor shaped like ``x``.
        Under ``torch.autocast("cuda", dtype)`` the op runs in ``dtype`` (the matmul policy,
        see the module docstring).
    """
    if not torch.jit.is_scripting():
        check_weights("raft_token_mixing", norm_weight=norm_weight, norm_bias=norm_bias,
                      fc1_weight=fc1_weight, fc1_bias=fc1_bias, fc2_weight=fc2_weight,
                      fc2_bias=fc2_bias)
    if not torch.jit.is_scripting() and implementation.use_reference():
        return reference.raft_token_mixing(
            x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, raft_size, dim,
            eps
        )
    return torch.ops.mlpmix.raft_token_mixing(
        x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, raft_size, dim, eps
    )


def channel_mlp(
    x: Tensor,
    norm_weight: Tensor,
    norm_bias: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
    eps: float = 1e-5,
) -> Tensor:
    """Channel-mixing branch without the residual add: ``fc2(GELU(fc1(LayerNorm_C(x))))``
    per token (exact GELU), as in RaftMLP's channel MLP (spec 1.1) and DynaMixer's
    ``MLP(LN2(x))`` (spec 2.3).

    On CPU the LayerNorm, fc1, bias + GELU and fc2 run fused per tile of tokens, so no
    hidden-width tensor is materialised (under autograd the fc1 pre-activation is kept for
    the backward, which then recomputes no GEMM).

    Args:
        x: ``(..., C)``, at least one dimension; any strides (a view whose tokens are not
            evenly strided rows of unit-stride channels is copied once).
        norm_weight, norm_bias: ``(C,)``, the LayerNorm affine.
        fc1_weight: ``(hidden, C)``; fc1_bias: ``(hidden,)``.
        fc2_weight: ``(C, hidden)``; fc2_bias: ``(C,)``.
        eps: the LayerNorm epsilon.

    Returns:
        The branch, a contiguous tensor shaped like ``x``.
        Under ``torch.autocast("cuda", dtype)`` the op runs in ``dtype`` (the matmul policy,
        see the module docstring).
    """
    if not torch.jit.is_scripting():
        check_weights("channel_mlp", norm_weight=norm_weight, norm_bias=norm_bias,
                      fc1_weight=fc1_weight, fc1_bias=fc1_bias, fc2_weight=fc2_weight,
                      fc2_bias=fc2_bias)
    if not torch.jit.is_scripting() and implementation.use_reference():
        return reference.channel_mlp(
            x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps
        )
    return torch.ops.mlpmix.channel_mlp(
        x, norm_weight, norm_bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps
    )


def cross_scale_embed(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], kernel_sizes: List[int]
) -> Tensor:
    """Cross-scale patch embedding (spec section 1.2), without the resize.

    Each token is the projection of the concatenated windows of every kernel size k, all
    centred on the token's s x s patch (stride ``s = min(kernel_sizes)``, padding
    ``(k - s) / 2``). Computed as one convolution with a merged weight; the unfolded
    patches are never materialised.

    Args:
        x: ``(B, Cin, H, W)``; H and W multiples of s; any strides.
        weight: ``(Cout, Cin * sum(k*k))``, per-kernel features ordered ``(c, kh, kw)``,
            kernels in list order (the layout of a Linear over the concatenated patches).
        bias: ``(Cout,)`` or None.
        kernel_sizes: every k a multiple of s with ``k - s`` even, e.g. ``[4, 8]``.

    Returns:
        Channels-last tokens ``(B, H/s, W/s, Cout)``, contiguous.
        Under ``torch.autocast("cuda", dtype)`` the op runs in ``dtype`` (the matmul policy,
        see the module docstring).
    """
    if not torch.jit.is_scripting():
        check_weights("cross_scale_embed", weight=weight, bias=bias)
    if not torch.jit.is_scripting() and implementation.use_reference():
        return reference.cross_scale_embed(x, weight, bias, kernel_sizes)
    return torch.ops.mlpmix.cross_scale_embed(x, weight, bias, kernel_sizes)


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``x @ weight.T + bias`` over the last axis: ``torch.nn.functional.linear``'s function,
    as an op so that the models' projections run on mlpmix's CPU matrix products (float32
    through oneDNN where ATen has it and the CPU, not an Intel one, runs it; ATen's BLAS
    otherwise, and cuBLAS on CUDA).

    Args:
        x: ``(..., in_features)``, at least 1-D; any strides.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)`` or None.

    Returns:
        ``(..., out_features)``, contiguous. Under ``torch.autocast("cuda", dtype)`` the op
        runs in ``dtype`` (the matmul policy, see the module docstring).
    """
    if not torch.jit.is_scripting():
        check_weights("linear", weight=weight, bias=bias)
    if not torch.jit.is_scripting() and implementation.use_reference():
        return reference.linear(x, weight, bias)
    return torch.ops.mlpmix.linear(x, weight, bias)


def reweight_branches(
    h: Tensor,
    w: Tensor,
    c: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
) -> Tensor:
    """DynaMixer's re-weighting of its three branches (spec section 2.2), before ``proj``:
    ``h * a[0] + w * a[1] + c * a[2]`` with per-sample, per-channel weights
    ``a[:, b, d] = softmax_k(fc2(GELU(fc1(mean_t(h + w + c)[b])))[d*3 + k])``.

    On CPU it makes two passes over the branches forward and two backward, where the formula
    as written makes about nine and twenty (most into fresh full-size tensors).

    Args:
        h, w, c: the branches ``(B, ..., D)``, all of one shape with at least one token (the
            middle sizes, ``H, W`` in the model, are the tokens); any strides.
        fc1_weight: ``(hidden, D)``; fc1_bias: ``(hidden,)``.
        fc2_weight: ``(3*D, hidden)``, output index ``d*3 + k`` for channel d, branch k;
            fc2_bias: ``(3*D,)``.

    Returns:
        A contiguous tensor shaped like ``h``. Under ``torch.autocast("cuda", dtype)`` the
        op runs in ``dtype`` (the matmul policy, see the module docstring).
    """
    if not torch.jit.is_scripting():
        check_weights("reweight_branches", fc1_weight=fc1_weight, fc1_bias=fc1_bias,
                      fc2_weight=fc2_weight, fc2_bias=fc2_bias)
    if not torch.jit.is_scripting() and implementation.use_reference():
        return reference.reweight_branches(h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    return torch.ops.mlpmix.reweight_branches(h, w, c, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
