"""RaftMLP modules (spec sections 1.1 and 1.2) on ``mlpmix.ops``; tokens are channels-last
``(B, H, W, C)``."""

from __future__ import annotations

from typing import List, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from .layers import ChannelMlp, DropPath, Mlp, add_residual


def _pair(resolution: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (resolution, resolution) if isinstance(resolution, int) else resolution


class RaftTokenMixingBlock(nn.Module):
    """Vertical then horizontal raft token mixing with their two residuals (spec 1.1):
    ``x = x + drop_path(V(norm_v(x)))``, then ``x = x + drop_path(Hz(norm_h(x)))``.

    ``mlp_v`` maps ``r*H -> expansion*r*H -> r*H`` and ``mlp_h`` the same along W, so the
    module is tied to its ``resolution`` (H, W).
    """

    def __init__(
        self,
        dim: int,
        resolution: Union[int, Tuple[int, int]],
        raft_size: int = 2,
        expansion: int = 2,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if dim % raft_size != 0:
            raise ValueError(
                f"RaftTokenMixingBlock: dim={dim} must be divisible by raft_size={raft_size}"
            )
        height, width = _pair(resolution)
        self.raft_size = raft_size
        self.norm_v = nn.LayerNorm(dim)
        self.mlp_v = Mlp(raft_size * height, expansion * raft_size * height)
        self.norm_h = nn.LayerNorm(dim)
        self.mlp_h = Mlp(raft_size * width, expansion * raft_size * width)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        # The parameters are spelled out: TorchScript cannot pass submodules to a helper.
        vertical = ops.raft_token_mixing(
            x,
            self.norm_v.weight,
            self.norm_v.bias,
            self.mlp_v.fc1.weight,
            self.mlp_v.fc1.bias,
            self.mlp_v.fc2.weight,
            self.mlp_v.fc2.bias,
            self.raft_size,
            1,
            self.norm_v.eps,
        )
        x = add_residual(x, self.drop_path(vertical))
        horizontal = ops.raft_token_mixing(
            x,
            self.norm_h.weight,
            self.norm_h.bias,
            self.mlp_h.fc1.weight,
            self.mlp_h.fc1.bias,
            self.mlp_h.fc2.weight,
            self.mlp_h.fc2.bias,
            self.raft_size,
            2,
            self.norm_h.eps,
        )
        return add_residual(x, self.drop_path(horizontal))


class RaftBlock(nn.Module):
    """A RaftMLP block (spec 1.1): ``token_mixing`` (vertical, horizontal), then the channel
    MLP ``x + drop_path(mlp_c(norm_c(x)))`` with ``C -> channel_expansion*C -> C`` (a
    :class:`~mlpmix.nn.layers.ChannelMlp`)."""

    def __init__(
        self,
        dim: int,
        resolution: Union[int, Tuple[int, int]],
        raft_size: int = 2,
        token_expansion: int = 2,
        channel_expansion: int = 4,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.token_mixing = RaftTokenMixingBlock(
            dim, resolution, raft_size, token_expansion, drop_path
        )
        self.norm_c = nn.LayerNorm(dim)
        self.mlp_c = ChannelMlp(dim, channel_expansion * dim)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = self.token_mixing(x)
        channel = self.mlp_c(x, self.norm_c.weight, self.norm_c.bias, self.norm_c.eps)
        return add_residual(x, self.drop_path(channel))


class MultiScalePatchEmbedding(nn.Module):
    """Cross-scale patch embedding (spec 1.2): ``(B, Cin, H, W) -> (B, H/s, W/s, Cout)``
    with stride ``s = min(kernels)``.

    An input whose H or W is not a multiple of s is first resized bicubically up to the
    next multiple, as the published code does. ``proj`` is the ``Linear(Cin*sum(k*k), Cout)``
    over the concatenated per-kernel windows.
    """

    def __init__(self, in_channels: int, out_channels: int, kernels: List[int]):
        super().__init__()
        self.kernels: List[int] = list(kernels)
        self.stride = min(self.kernels)
        self.proj = nn.Linear(in_channels * sum(k * k for k in self.kernels), out_channels)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2], x.shape[-1]
        if height % self.stride != 0 or width % self.stride != 0:
            size = [-(-height // self.stride) * self.stride, -(-width // self.stride) * self.stride]
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        return ops.cross_scale_embed(x, self.proj.weight, self.proj.bias, self.kernels)
