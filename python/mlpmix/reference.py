"""Pure-PyTorch reference of every mlpmix operator: the spec, executable.

Written from ``spec/models.md`` independently of the C++ kernels, with the regroupings as
einops patterns. Tests compare the kernels against these functions; they also serve as an
eager fallback. Signatures equal those of :mod:`mlpmix.ops`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

__all__ = ["dynamixer"]


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
