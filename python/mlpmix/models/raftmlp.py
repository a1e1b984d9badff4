"""RaftMLP-S/M/L (spec 1.3): configurations and the model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Tuple

from torch import Tensor, nn

from ..nn import MultiScalePatchEmbedding, RaftBlock
from .classifier import IMAGENET_MEAN, IMAGENET_STD, TokenClassifier
from .init import drop_path_rates, init_weights
from .registry import register_model


@dataclass(frozen=True)
class RaftMLPConfig:
    dims: Tuple[int, ...]  # channels per level
    depths: Tuple[int, ...]  # blocks per level
    kernels: Tuple[Tuple[int, ...], ...]  # cross-scale kernels per level; stride = min
    raft_size: int = 2
    token_expansion: int = 2
    channel_expansion: int = 4
    img_size: int = 224
    # Data config (``pretrained_cfg``). The authors evaluate ImageNet with
    # Resize(256) -> CenterCrop(224) (crop 224/256), torchvision's default bilinear
    # interpolation and the ImageNet mean/std (okojoalg/raft-mlp, libs/datasets.py).
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD


_KERNELS = ((4, 8), (2, 4), (2, 4), (2,))

#: One row per published model (spec 1.3), plus a tiny one for 8x8 digits (the demo, whose
#: images are whole digits area-resized to 8x8 and scaled to [0, 1], not normalised).
RAFTMLP_CONFIGS = {
    "raftmlp_s": RaftMLPConfig(dims=(64, 128, 256, 512), depths=(2, 2, 6, 2), kernels=_KERNELS),
    "raftmlp_m": RaftMLPConfig(dims=(96, 192, 384, 768), depths=(2, 2, 6, 2), kernels=_KERNELS),
    "raftmlp_l": RaftMLPConfig(dims=(128, 192, 512, 1024), depths=(2, 2, 6, 2), kernels=_KERNELS),
    "raftmlp_tiny": RaftMLPConfig(dims=(32, 64), depths=(2, 2), kernels=((1, 3), (2,)), img_size=8,
                                  crop_pct=1.0, interpolation="box", mean=(0.0,), std=(1.0,)),
}


class RaftLevel(nn.Module):
    """Cross-scale embedding (the level's only downsampling), then its RaftMLP blocks.

    Takes images or tokens channels-first ``(B, C, H, W)`` and returns tokens
    ``(B, H/s, W/s, dim)``.
    """

    def __init__(self, in_dim: int, dim: int, kernels: Tuple[int, ...], resolution: int,
                 depth: int, config: RaftMLPConfig, drop_paths: Tuple[float, ...]):
        super().__init__()
        self.embed = MultiScalePatchEmbedding(in_dim, dim, list(kernels))
        self.blocks = nn.Sequential(*[
            RaftBlock(dim, resolution, config.raft_size, config.token_expansion,
                      config.channel_expansion, drop_paths[i])
            for i in range(depth)
        ])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.embed(x))


class RaftMLP(TokenClassifier):
    """RaftMLP (Tatsunami & Taki, ACCV 2022, hierarchical) on the mlpmix raft ops.

    Token-mixing widths are tied to ``img_size`` (grids img_size/4, /8, /16, /32 for the
    published configurations); other input sizes must give the same grids (the embedding
    resizes up to a multiple of its stride, so 221 to 224 all work for 224), else the model
    raises ``ValueError``. ``architecture`` names the model in messages and
    ``pretrained_cfg``.
    """

    def __init__(self, config: RaftMLPConfig, num_classes: int = 1000, in_chans: int = 3,
                 drop_path_rate: float = 0.0, drop_rate: float = 0.0,
                 architecture: str = "raftmlp"):
        super().__init__(config.dims[-1], num_classes, drop_rate)
        self.config = config
        rates = drop_path_rates(drop_path_rate, sum(config.depths))
        levels, reductions, grids = [], [], []
        in_dim, resolution, reduction = in_chans, config.img_size, 1
        first_stride = min(config.kernels[0])
        for i, (dim, depth, kernels) in enumerate(zip(config.dims, config.depths, config.kernels)):
            stride = min(kernels)
            resolution = -(-resolution // stride)  # the embedding resizes up to a multiple
            reduction *= stride
            reductions.append(reduction)
            grids.append(resolution)
            first = sum(config.depths[:i])
            levels.append(RaftLevel(in_dim, dim, kernels, resolution, depth, config,
                                    tuple(rates[first:first + depth])))
            in_dim = dim
        self.levels = nn.ModuleList(levels)
        # Sizes whose first grid (rounded up) is the configured one give every grid.
        self._describe(architecture, config, in_chans, "levels", "levels.0.embed.proj",
                       config.dims, reductions,
                       ((grids[0] - 1) * first_stride + 1, grids[0] * first_stride))
        self.apply(init_weights)

    def forward_stages(self, x: Tensor, take: List[int], last: int) -> Tuple[Tensor, List[Tensor]]:
        """Levels ``0..last`` on images: the last one's tokens and those of the levels in
        ``take``, channels-last (see :meth:`TokenClassifier.forward_stages`)."""
        kept: List[Tensor] = []
        for i, level in enumerate(self.levels):
            if i <= last:
                x = level(x)
                if i in take:
                    kept.append(x)
                x = x.permute(0, 3, 1, 2)  # a view: the next embedding reads any strides
        return x.permute(0, 2, 3, 1), kept


def _raftmlp(name: str, img_size: int, **kwargs) -> RaftMLP:
    return RaftMLP(replace(RAFTMLP_CONFIGS[name], img_size=img_size), architecture=name, **kwargs)


@register_model
def raftmlp_s(img_size: int = 224, **kwargs) -> RaftMLP:
    """RaftMLP-S: 9,868,768 parameters at 1000 classes."""
    return _raftmlp("raftmlp_s", img_size, **kwargs)


@register_model
def raftmlp_m(img_size: int = 224, **kwargs) -> RaftMLP:
    """RaftMLP-M: 21,413,632 parameters at 1000 classes."""
    return _raftmlp("raftmlp_m", img_size, **kwargs)


@register_model
def raftmlp_l(img_size: int = 224, **kwargs) -> RaftMLP:
    """RaftMLP-L: 36,184,672 parameters at 1000 classes."""
    return _raftmlp("raftmlp_l", img_size, **kwargs)


@register_model
def raftmlp_tiny(img_size: int = 8, **kwargs) -> RaftMLP:
    """A small RaftMLP for 8x8 images (scikit-learn digits), used by ``mlpmix demo``."""
    return _raftmlp("raftmlp_tiny", img_size, **kwargs)
