"""DynaMixer modules (spec sections 2.1 and 2.2) on ``torch.ops.mlpmix.dynamixer``."""

from __future__ import annotations

from typing import Tuple, Union

from torch import Tensor, nn

from .. import ops
from .layers import Mlp


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
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, dim: int = -2) -> Tensor:
        mixed = ops.dynamixer(
            x,
            self.compress.weight,
            self.compress.bias,
            self.generate.weight,
            self.generate.bias,
            self.num_segments,
            dim,
        )
        return self.out(mixed)


class DynaMixerBlock(nn.Module):
    """The DynaMixer token mixer of a layer (spec 2.2) on channels-last ``(B, H, W, D)``.

    ``mix_h`` mixes along H within each column, ``mix_w`` along W within each row (through
    the op's ``dim``, no transposed copies), ``mlp_c`` is a bias-free channel projection;
    the three branches are re-weighted per channel (``reweight``, as in Vision Permutator)
    and projected by ``proj``.
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
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels = x.shape[0], x.shape[-1]
        h = self.mix_h(x, 1)
        w = self.mix_w(x, 2)
        c = self.mlp_c(x)
        a = (h + w + c).mean(dim=(1, 2))
        a = self.reweight(a).reshape(batch, channels, 3).softmax(dim=2)
        a = a.permute(2, 0, 1).unsqueeze(2).unsqueeze(2)  # (3, B, 1, 1, D)
        return self.proj(h * a[0] + w * a[1] + c * a[2])
