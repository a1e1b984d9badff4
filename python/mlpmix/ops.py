"""Typed, documented wrappers over the ``torch.ops.mlpmix`` operators.

Each wrapper calls the C++ operator through the dispatcher, so it works with autograd,
TorchScript, ``torch.compile`` and ``torch.export``. The pure-PyTorch definitions of the same
functions are in :mod:`mlpmix.reference`.
"""

from __future__ import annotations

from typing import Optional

import torch
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
    """
    return torch.ops.mlpmix.dynamixer(
        x, compress_weight, compress_bias, generate_weight, generate_bias, num_segments, dim
    )
