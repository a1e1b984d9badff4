"""Pure-PyTorch reference of every mlpmix operator: the spec, executable.

Written from ``spec/models.md`` independently of the C++ kernels, with the regroupings as
einops patterns. Tests compare the kernels against these functions; they also serve as an
eager fallback. Signatures equal those of :mod:`mlpmix.ops`.
"""

from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import Tensor

__all__ = [
    "dynamixer",
    "raft_token_mixing",
    "channel_mlp",
    "cross_scale_embed",
    "linear",
    "reweight_branches",
]


@torch.jit.unused  # scripted code always runs the fused ops
def dynamixer(
    x: Tensor,
    compress_weight: Tensor,
    compress_bias: Optional[Tensor],
    generate_weight: Tensor,
    generate_bias: Optional[Tensor],
    num_segments: int,
    dim: int = -2,
) -> Tensor:
    """DynaMixer operation, spec section 2.1 steps 1-4 (see :func:`mlpmix.ops.dynamixer`)."""
    tokens = x.movedim(dim, -2)  # (..., N, D)
    batch_shape, (n, channels) = tokens.shape[:-2], tokens.shape[-2:]
    tokens = tokens.reshape(-1, n, channels)
    # 1. compress every token over all D channels; one segment = d consecutive features
    z = F.linear(tokens, compress_weight, compress_bias)
    z = rearrange(z, "b n (s k) -> b s (n k)", s=num_segments)
    # 2. one generator shared by all segments; flat output index i*N + j
    logits = rearrange(F.linear(z, generate_weight, generate_bias), "b s (i j) -> b s i j", i=n)
    # 3. softmax over the input tokens i for each output token j
    weights = logits.softmax(dim=-2)
    # 4. segment s owns the contiguous channels [s*D/S, (s+1)*D/S)
    segments = rearrange(tokens, "b n (s c) -> b s n c", s=num_segments)
    mixed = torch.einsum("bsij,bsic->bsjc", weights, segments)
    mixed = rearrange(mixed, "b s n c -> b n (s c)")
    return mixed.reshape(*batch_shape, n, channels).movedim(-2, dim)


# The regrouping of spec 1.1 step 2 per mixed axis, and its inverse.
_RAFT_PATTERNS = {
    1: ("b h w (r o) -> b o w (r h)", "b o w (r h) -> b h w (r o)"),
    2: ("b h w (r o) -> b o h (r w)", "b o h (r w) -> b h w (r o)"),
}


@torch.jit.unused  # scripted code always runs the fused ops
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
    """Raft token mixing branch, spec 1.1 steps 1-4 without the residual add."""
    if dim not in (1, 2, -3, -2):
        raise ValueError(f"raft_token_mixing: dim must be 1, 2, -3 or -2, got {dim}")
    regroup, ungroup = _RAFT_PATTERNS[dim % 4]
    u = F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps)
    rows = rearrange(u, regroup, r=raft_size)
    v = F.linear(F.gelu(F.linear(rows, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)
    return rearrange(v, ungroup, r=raft_size)


@torch.jit.unused  # scripted code always runs the fused ops
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
    per token (RaftMLP spec 1.1 channel mixing, DynaMixer spec 2.3 ``MLP(LN2(x))``)."""
    u = F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps)
    return F.linear(F.gelu(F.linear(u, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)


@torch.jit.unused  # scripted code always runs the fused ops
def cross_scale_embed(
    x: Tensor, weight: Tensor, bias: Optional[Tensor], kernel_sizes: List[int]
) -> Tensor:
    """Cross-scale patch embedding, spec 1.2: unfold per kernel + concat + one Linear."""
    stride = min(kernel_sizes)
    # F.unfold orders each kernel's features (c, kh, kw)
    patches = [F.unfold(x, k, padding=(k - stride) // 2, stride=stride) for k in kernel_sizes]
    tokens = rearrange(torch.cat(patches, dim=1), "b f (h w) -> b h w f", h=x.shape[-2] // stride)
    return F.linear(tokens, weight, bias)


@torch.jit.unused  # scripted code always runs the fused ops
def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``y[..., o] = sum_i x[..., i] weight[o, i] + bias[o]``: the authors' ``nn.Linear``."""
    return F.linear(x, weight, bias)


@torch.jit.unused  # scripted code always runs the fused ops
def reweight_branches(
    h: Tensor,
    w: Tensor,
    c: Tensor,
    fc1_weight: Tensor,
    fc1_bias: Tensor,
    fc2_weight: Tensor,
    fc2_bias: Tensor,
) -> Tensor:
    """DynaMixer's re-weighting of its three branches, spec 2.2: the token mean of
    ``h + w + c``, an MLP to ``3*D`` scores per sample, a softmax over the three branches of
    each channel, and the weighted sum."""
    mean = reduce(h + w + c, "b ... d -> b d", "mean")
    scores = F.linear(F.gelu(F.linear(mean, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)
    a = rearrange(scores, "b (d k) -> k b 1 d", k=3).softmax(dim=0)
    tokens = [rearrange(t, "b ... d -> b (...) d") for t in (h, w, c)]
    out = tokens[0] * a[0] + tokens[1] * a[1] + tokens[2] * a[2]
    return out.reshape(h.shape)
