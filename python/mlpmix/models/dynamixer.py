"""DynaMixer-S/M/L (spec 2.3): configurations and the model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import ChannelMlp, DropPath, DynaMixerBlock
from ..nn.layers import add_residual
from .classifier import IMAGENET_MEAN, IMAGENET_STD, TokenClassifier
from .init import drop_path_rates, init_weights
from .registry import register_model


@dataclass(frozen=True)
class DynaMixerConfig:
    layers: Tuple[int, ...]  # layers per stage
    dims: Tuple[int, ...]  # channels per stage
    segments: Tuple[int, ...]  # S per stage
    reduced_dim: int  # d
    patch_size: int = 7  # stem convolution kernel and stride
    img_size: int = 224
    mlp_ratio: int = 3
    # Data config (``pretrained_cfg``), as the authors' timm ``_cfg`` gives it
    # (ziyuwwang/DynaMixer, models/vision_model.py): bicubic, ImageNet mean/std; crop_pct
    # per model (models/configs/conf_dynamixer.py).
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD


#: One row per published model (spec 2.3), plus a tiny one for 8x8 digits (the demo, whose
#: images are whole digits area-resized to 8x8 and scaled to [0, 1], not normalised).
DYNAMIXER_CONFIGS = {
    "dynamixer_s": DynaMixerConfig(layers=(4, 14), dims=(192, 384), segments=(8, 16), reduced_dim=2,
                                   crop_pct=0.9),
    "dynamixer_m": DynaMixerConfig(layers=(7, 17), dims=(256, 512), segments=(8, 16), reduced_dim=2,
                                   crop_pct=0.9),
    "dynamixer_l": DynaMixerConfig(layers=(8, 28), dims=(256, 512), segments=(8, 16), reduced_dim=8,
                                   crop_pct=0.875),
    "dynamixer_tiny": DynaMixerConfig(
        layers=(2, 2), dims=(32, 64), segments=(4, 8), reduced_dim=2, patch_size=1, img_size=8,
        crop_pct=1.0, interpolation="box", mean=(0.0,), std=(1.0,)
    ),
}


class DynaMixerLayer(nn.Module):
    """``x + DropPath(token_mixer(norm1(x)))``, then ``x + DropPath(mlp(norm2(x)))``, the
    latter one fused :class:`~mlpmix.nn.layers.ChannelMlp`."""

    def __init__(self, dim: int, resolution: int, num_segments: int, reduced_dim: int,
                 mlp_ratio: int, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = DynaMixerBlock(dim, resolution, num_segments, reduced_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ChannelMlp(dim, dim * mlp_ratio)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = add_residual(x, self.drop_path(self.token_mixer(self.norm1(x))))
        channel = self.mlp(x, self.norm2.weight, self.norm2.bias, self.norm2.eps)
        return add_residual(x, self.drop_path(channel))


class DynaMixerStage(nn.Module):
    """An optional stride-2 downsampling convolution, then the stage's layers on
    channels-last tokens.

    The tokens are made contiguous once per stage: a permuted view of the convolution's
    output would make every LayerNorm copy it and every residual add run strided."""

    def __init__(self, in_dim: int, dim: int, resolution: int, depth: int, num_segments: int,
                 reduced_dim: int, mlp_ratio: int, drop_paths: Tuple[float, ...]):
        super().__init__()
        self.downsample = (
            nn.Conv2d(in_dim, dim, kernel_size=2, stride=2) if in_dim != dim else nn.Identity()
        )
        self.layers = nn.Sequential(*[
            DynaMixerLayer(dim, resolution, num_segments, reduced_dim, mlp_ratio, drop_paths[i])
            for i in range(depth)
        ])

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
        return self.layers(x)


class DynaMixer(TokenClassifier):
    """DynaMixer (Wang et al., ICML 2022) on ``torch.ops.mlpmix.dynamixer``.

    Input ``(B, in_chans, img_size, img_size)``; features are channels-last inside. The
    stem convolution floors, so sizes up to ``patch_size - 1`` pixels larger give the same
    grids and work; others raise ``ValueError``. ``architecture`` names the model in
    messages and ``pretrained_cfg``.
    """

    def __init__(self, config: DynaMixerConfig, num_classes: int = 1000, in_chans: int = 3,
                 drop_path_rate: float = 0.0, drop_rate: float = 0.0,
                 architecture: str = "dynamixer"):
        super().__init__(config.dims[-1], num_classes, drop_rate)
        self.config = config
        self.stem = nn.Conv2d(in_chans, config.dims[0], config.patch_size, config.patch_size)
        self.pointwise_stem = config.patch_size == 1
        rates = drop_path_rates(drop_path_rate, sum(config.layers))
        grid = resolution = config.img_size // config.patch_size
        reduction = config.patch_size
        stages, reductions = [], []
        for i, depth in enumerate(config.layers):
            in_dim = config.dims[max(i - 1, 0)]
            if in_dim != config.dims[i]:
                resolution //= 2
                reduction *= 2
            reductions.append(reduction)
            first = sum(config.layers[:i])
            stages.append(DynaMixerStage(
                in_dim, config.dims[i], resolution, depth, config.segments[i], config.reduced_dim,
                config.mlp_ratio, tuple(rates[first:first + depth])))
        self.stages = nn.Sequential(*stages)
        # Sizes whose stem grid (rounded down) is the configured one give every grid.
        patch = config.patch_size
        self._describe(architecture, config, in_chans, "stages", "stem", config.dims, reductions,
                       (grid * patch, grid * patch + patch - 1))
        self.apply(init_weights)

    def stem_tokens(self, x: Tensor) -> Tensor:
        """The stem's output, channels-last ``(B, H', W', D)``.

        A 1x1 stem (the tiny model's) runs as the per-pixel linear map it is. As a
        convolution, AOTInductor's compile would bound the package's batch below 16: ATen
        picks a 1x1 convolution's kernel by the batch size, the compile's shape propagation
        records that choice as a guard, and the package's input check (on in ``mlpmix-run``)
        then refuses larger batches."""
        if self.pointwise_stem:
            return F.linear(x.permute(0, 2, 3, 1), self.stem.weight.flatten(1), self.stem.bias)
        return self.stem(x).permute(0, 2, 3, 1).contiguous()

    def forward_stages(self, x: Tensor, take: List[int], last: int) -> Tuple[Tensor, List[Tensor]]:
        """The stem, then stages ``0..last``: the last one's tokens and those of the stages in
        ``take``, channels-last (see :meth:`TokenClassifier.forward_stages`)."""
        x = self.stem_tokens(x)
        kept: List[Tensor] = []
        for i, stage in enumerate(self.stages):
            if i <= last:
                x = stage(x)
                if i in take:
                    kept.append(x)
        return x, kept


def _dynamixer(name: str, img_size: int, **kwargs) -> DynaMixer:
    return DynaMixer(replace(DYNAMIXER_CONFIGS[name], img_size=img_size), architecture=name, **kwargs)


@register_model
def dynamixer_s(img_size: int = 224, **kwargs) -> DynaMixer:
    """DynaMixer-S: 26,265,960 parameters at 1000 classes."""
    return _dynamixer("dynamixer_s", img_size, **kwargs)


@register_model
def dynamixer_m(img_size: int = 224, **kwargs) -> DynaMixer:
    """DynaMixer-M: 57,128,264 parameters at 1000 classes."""
    return _dynamixer("dynamixer_m", img_size, **kwargs)


@register_model
def dynamixer_l(img_size: int = 224, **kwargs) -> DynaMixer:
    """DynaMixer-L: 97,818,088 parameters at 1000 classes."""
    return _dynamixer("dynamixer_l", img_size, **kwargs)


@register_model
def dynamixer_tiny(img_size: int = 8, **kwargs) -> DynaMixer:
    """A small DynaMixer for 8x8 images (scikit-learn digits), used by ``mlpmix demo``."""
    return _dynamixer("dynamixer_tiny", img_size, **kwargs)
