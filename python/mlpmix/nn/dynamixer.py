"""DynaMixer modules (spec sections 2.1 and 2.2) on ``torch.ops.mlpmix.dynamixer``."""

from __future__ import annotations

from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import implementation, ops
from .layers import Linear, Mlp


class DynaMixerOperation(nn.Module):
    """The DynaMixer operation (spec 2.1) with its output projection.

    Mixes ``num_tokens`` tokens of width ``dim``. Parameters: ``compress``
    (``Linear(dim, S*d)``), ``generate`` (``Linear(N*d, N*N)``, shared by the S segments)
    and ``out`` (``Linear(dim, dim)``).

    Input ``(B, N, D)``; ``forward(x, dim)`` also mixes along another axis of a
    channels-last tensor, e.g. ``dim=1`` of ``(B, H, W, D)``, without copying it.
    """

    def __init__(self, num_tokens: int, dim: int, num_segments: int = 8, reduced_dim: int = 2):
        super().__init__()
        if dim % num_segments != 0:
            raise ValueError(
                f"DynaMixerOperation: dim={dim} must be divisible by num_segments={num_segments}"
            )
        self.num_tokens = num_tokens
        self.num_segments = num_segments
        self.reduced_dim = reduced_dim
        self.compress = nn.Linear(dim, num_segments * reduced_dim)
        self.generate = nn.Linear(num_tokens * reduced_dim, num_tokens * num_tokens)
        self.out = Linear(dim, dim)

    def mix(self, x: Tensor, dim: int = -2) -> Tensor:
        """The mixed tokens before the output projection ``out``."""
        return ops.dynamixer(
            x,
            self.compress.weight,
            self.compress.bias,
            self.generate.weight,
            self.generate.bias,
            self.num_segments,
            dim,
        )

    def forward(self, x: Tensor, dim: int = -2) -> Tensor:
        return self.out(self.mix(x, dim))


class DynaMixerBlock(nn.Module):
    """The DynaMixer token mixer of a layer (spec 2.2) on channels-last ``(B, H, W, D)``.

    ``mix_h`` mixes along H within each column, ``mix_w`` along W within each row (through
    the op's ``dim``, no transposed copies), ``mlp_c`` is a bias-free channel projection;
    the three branches are re-weighted per channel (``reweight``, as in Vision Permutator)
    and projected by ``proj``.

    The fused implementation runs the same function folded where the per-sample weights
    are smaller than a branch (:meth:`forward_folded`, ``dim < H*W``, DynaMixer's first
    stage) and with fewer full-size passes elsewhere (:meth:`forward_unfolded`);
    ``mlpmix.implementation.use("reference")`` runs the spec's formula as written.
    """

    def __init__(
        self,
        dim: int,
        resolution: Union[int, Tuple[int, int]],
        num_segments: int = 8,
        reduced_dim: int = 2,
    ):
        super().__init__()
        height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
        self.mix_h = DynaMixerOperation(height, dim, num_segments, reduced_dim)
        self.mix_w = DynaMixerOperation(width, dim, num_segments, reduced_dim)
        self.mlp_c = Linear(dim, dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = Linear(dim, dim)
        self.folded = dim < height * width

    def branch_weights(self, mean: Tensor) -> Tensor:
        """The per-channel weights of the three branches, ``(3, B, D)``, from the token mean
        of ``h + w + c``, ``(B, D)``: ``reweight``, then a softmax over the branches."""
        batch, channels = mean.shape[0], mean.shape[1]
        return self.reweight(mean).reshape(batch, channels, 3).softmax(dim=2).permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not implementation.use_reference():
            return self.forward_folded(x) if self.folded else self.forward_unfolded(x)
        h = self.mix_h(x, 1)
        w = self.mix_w(x, 2)
        c = self.mlp_c(x)
        a = (h + w + c).mean(dim=(1, 2))
        a = self.branch_weights(a).unsqueeze(2).unsqueeze(2)  # (3, B, 1, 1, D)
        return self.proj(h * a[0] + w * a[1] + c * a[2])

    def forward_unfolded(self, x: Tensor) -> Tensor:
        """``forward`` for ``dim >= H*W`` (where the per-sample weights of
        :meth:`forward_folded` would be the larger tensors): the token mean, ``reweight``,
        the softmax over the branches and the weighted sum run as one op,
        :func:`mlpmix.ops.reweight_branches`, in two passes over the ``(B, H, W, D)``
        branches each way.
        """
        h = self.mix_h(x, 1)
        w = self.mix_w(x, 2)
        c = self.mlp_c(x)
        mlp = self.reweight
        return self.proj(
            ops.reweight_branches(
                h, w, c, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias
            )
        )

    def forward_folded(self, x: Tensor) -> Tensor:
        """``forward`` without materialising the branches ``h``, ``w``, ``c``.

        The token mean commutes with the linear maps, so the re-weighting sees
        ``mean(h + w + c)`` from the means of the mixed tokens; the per-sample channel weights
        ``a`` then scale the rows of each branch's output projection, and one batched GEMM per
        branch accumulates the weighted sum. This saves five elementwise passes over
        ``(B, H, W, D)`` tensors for three over ``(B, D, D)`` ones.
        """
        batch, height, width, channels = x.shape
        tokens = height * width
        mixed_h = self.mix_h.mix(x, 1)
        mixed_w = self.mix_w.mix(x, 2)
        out_h, out_w = self.mix_h.out, self.mix_w.out
        # Token sums, not means: their backward is a broadcast view, where a mean's divides
        # into a fresh (B, H, W, D) tensor.
        mean = (
            F.linear(mixed_h.sum(dim=(1, 2)) / tokens, out_h.weight, out_h.bias)
            + F.linear(mixed_w.sum(dim=(1, 2)) / tokens, out_w.weight, out_w.bias)
            + F.linear(x.sum(dim=(1, 2)) / tokens, self.mlp_c.weight)
        )
        a = self.branch_weights(mean).unsqueeze(3)  # (3, B, D, 1): scales output rows
        bias = (out_h.bias.unsqueeze(1) * a[0] + out_w.bias.unsqueeze(1) * a[1]).transpose(1, 2)
        mixed = torch.baddbmm(bias, mixed_h.reshape(batch, tokens, channels),
                              (out_h.weight * a[0]).transpose(1, 2))
        # In place: a fresh (B, H*W, D) result per branch would only copy `mixed` into it.
        # In-place ops are not autocast: under autocast their operands join `mixed`'s dtype.
        mixed.baddbmm_(mixed_w.reshape(batch, tokens, channels).to(mixed.dtype),
                       (out_w.weight * a[1]).transpose(1, 2).to(mixed.dtype))
        mixed.baddbmm_(x.reshape(batch, tokens, channels).to(mixed.dtype),
                       (self.mlp_c.weight * a[2]).transpose(1, 2).to(mixed.dtype))
        return self.proj(mixed.reshape(batch, height, width, channels))
