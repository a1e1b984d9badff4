"""The classification and backbone surface both families share (timm-style)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from .init import init_weights

#: timm's IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD (torchvision's ImageNet statistics).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Feature-map layouts ``forward_intermediates`` and the features-only module can return.
OUTPUT_FORMATS = ("NCHW", "NHWC")

Indices = Optional[Union[int, Sequence[int]]]


class FeatureInfo(list):
    """timm-like description of a backbone's feature maps: a list with one dict per map
    (``num_chs``: channels, ``reduction``: input size / map size, ``module``: the module
    producing it), plus timm's accessors."""

    def _get(self, key: str, idx: Optional[Union[int, Sequence[int]]]) -> Any:
        if idx is None:
            return [info[key] for info in self]
        if isinstance(idx, int):
            return self[idx][key]
        return [self[i][key] for i in idx]

    def channels(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        """``num_chs`` of every map (a list), of map ``idx`` (an int) or of the maps ``idx``."""
        return self._get("num_chs", idx)

    def reduction(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        """``reduction`` of every map, of map ``idx`` or of the maps ``idx`` (as ``channels``)."""
        return self._get("reduction", idx)

    def module_name(self, idx: Optional[Union[int, Sequence[int]]] = None) -> Any:
        """``module`` of every map, of map ``idx`` or of the maps ``idx`` (as ``channels``)."""
        return self._get("module", idx)

    def get_dicts(self, keys: Optional[Sequence[str]] = None,
                  idx: Optional[Sequence[int]] = None) -> List[Dict[str, Any]]:
        """The dicts (copies), restricted to ``keys`` and to the maps ``idx`` when given."""
        infos = list(self) if idx is None else [self[i] for i in idx]
        return [{k: v for k, v in info.items() if keys is None or k in keys} for info in infos]


class TokenClassifier(nn.Module):
    """A backbone of stages producing channels-last tokens ``(B, H, W, C)``, then LayerNorm
    per token -> mean over tokens -> dropout -> Linear.

    Subclasses build their stages and the head through ``__init__``, describe them once with
    :meth:`_describe` (the model's name, input, stages and data config) and implement
    :meth:`forward_stages`; everything else (the input check, ``forward_features``,
    ``forward_intermediates``, ``feature_info``, ``pretrained_cfg``, features-only
    backbones) is shared.
    """

    def __init__(self, num_features: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.norm = nn.LayerNorm(num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._make_head(num_classes)

    def _describe(self, architecture: str, config: Any, in_chans: int, stage_attr: str,
                  first_conv: str, stage_channels: Sequence[int],
                  stage_reductions: Sequence[int], input_sizes: Tuple[int, int]) -> None:
        """Records what the shared surface needs to know about a built model.

        ``config`` carries ``img_size`` and the data config (``crop_pct``,
        ``interpolation``, ``mean``, ``std``; a one-value ``mean``/``std`` applies to every
        channel); ``stage_attr`` names the attribute holding the stages; ``first_conv`` is
        the state-dict prefix of the first convolution or embedding; ``input_sizes`` is the
        inclusive range of image heights and widths that give the configured token grids.
        """
        self.architecture = architecture
        self.in_chans = in_chans
        self.img_size = config.img_size
        self._min_size, self._max_size = input_sizes
        self._stage_attr = stage_attr
        self.num_stages = len(stage_channels)
        self._norm_stage = self.num_stages - 1  # the stage whose tokens feed norm and head
        self.feature_info = FeatureInfo(
            dict(num_chs=channels, reduction=reduction, module=f"{stage_attr}.{i}")
            for i, (channels, reduction) in enumerate(zip(stage_channels, stage_reductions))
        )

        def per_channel(values: Tuple[float, ...]) -> Tuple[float, ...]:
            return tuple(values) * in_chans if len(values) == 1 else tuple(values)

        self.pretrained_cfg: Dict[str, Any] = dict(
            architecture=architecture,
            input_size=(in_chans, config.img_size, config.img_size),
            fixed_input_size=True,  # the token-mixing widths are tied to img_size
            crop_pct=config.crop_pct,
            crop_mode="center",
            interpolation=config.interpolation,
            mean=per_channel(config.mean),
            std=per_channel(config.std),
            num_classes=self.num_classes,
            first_conv=first_conv,
            classifier="head",
        )
        self.default_cfg = self.pretrained_cfg  # the name older timm code reads

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_stages(self, x: Tensor, take: List[int], last: int) -> Tuple[Tensor, List[Tensor]]:
        """Runs stages ``0..last`` on checked images ``(B, C, H, W)``: returns the tokens
        ``(B, H', W', C')`` of stage ``last`` and those of the stages listed in ``take``
        (ascending), channels-last. Implemented by each family."""
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Raises ``ValueError`` naming the model and its ``img_size``/``in_chans`` when ``x``
        is not a batch of images this model was built for. A few integer comparisons; it
        scripts, exports (with a dynamic batch) and compiles."""
        if x.dim() != 4:
            raise ValueError(f"{self.architecture} takes a batch of images (B, C, H, W), "
                             f"got a tensor of shape {list(x.shape)}")
        channels, height, width = x.shape[1], x.shape[2], x.shape[3]
        if channels != self.in_chans:
            raise ValueError(
                f"{self.architecture} was built for {self.in_chans} input channels "
                f"(in_chans={self.in_chans}), got {channels}; create it with "
                f"in_chans={channels} to use such images")
        if (height < self._min_size or height > self._max_size
                or width < self._min_size or width > self._max_size):
            size = self.img_size
            hint = (f"create it with img_size={height} to train at that size" if height == width
                    else f"resize the images to {size}×{size}")
            raise ValueError(
                f"{self.architecture} was built for {size}×{size} inputs (img_size={size}), "
                f"got {height}×{width}; {hint}")

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> the last stage's tokens ``(B, H', W', num_features)``,
        before the norm."""
        self.check_input(x)
        empty: List[int] = []
        return self.forward_stages(x, empty, self.num_stages - 1)[0]

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> normalised tokens ``(B, H', W', num_features)``."""
        return self.norm(self.forward_tokens(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Normalised tokens -> logits (``pre_logits``: the pooled features before ``head``)."""
        x = self.head_drop(x.mean(dim=(1, 2)))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> logits ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the classifier (``num_classes=0``: pooled features out)."""
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
        self.head.apply(init_weights)
        if hasattr(self, "pretrained_cfg"):
            self.pretrained_cfg["num_classes"] = num_classes

    # Backbone use (timm's conventions).

    def feature_take_indices(self, indices: Indices = None) -> Tuple[List[int], int]:
        """Stage indices to output, ascending, and the largest: ``None`` takes every stage,
        an int ``n`` the last ``n``, a sequence those stages (negative ones count from the
        end)."""
        count = self.num_stages
        if indices is None:
            take = list(range(count))
        elif isinstance(indices, int):
            if not 0 < indices <= count:
                raise ValueError(f"{self.architecture}: indices={indices} must take 1 to "
                                 f"{count} of its {count} stages")
            take = list(range(count - indices, count))
        else:
            take = []
            for index in indices:
                if not -count <= index < count:
                    raise ValueError(f"{self.architecture}: stage index {index} out of range "
                                     f"for its {count} stages")
                take.append(index % count)
            take = sorted(set(take))
            if not take:
                raise ValueError(f"{self.architecture}: indices must name at least one stage")
        return take, take[-1]

    def _intermediates(self, x: Tensor, take: List[int], last: int, norm: bool,
                       channels_first: bool) -> Tuple[Tensor, List[Tensor]]:
        """The scriptable core of :meth:`forward_intermediates` (``take`` from
        :meth:`feature_take_indices`; stages run up to ``last``)."""
        self.check_input(x)
        x, kept = self.forward_stages(x, take, last)
        intermediates: List[Tensor] = []
        for j in range(len(kept)):
            tokens = kept[j]
            if norm and take[j] == self._norm_stage:
                tokens = self.norm(tokens)
            intermediates.append(tokens.permute(0, 3, 1, 2) if channels_first else tokens)
        if last == self._norm_stage:
            x = self.norm(x)
        return x, intermediates

    def forward_intermediates(self, x: Tensor, indices: Indices = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> Union[Tuple[Tensor, List[Tensor]], List[Tensor]]:
        """Images -> ``(final_features, intermediates)``, as timm's models do.

        ``intermediates`` are the feature maps of the stages chosen by ``indices`` (see
        :meth:`feature_take_indices`), in stage order, ``(B, C, H, W)`` views
        (``output_fmt="NHWC"``: the channels-last tokens themselves). ``norm`` applies the
        final norm to the last stage's map. ``final_features`` is what
        :meth:`forward_features` returns; with ``stop_early`` the stages after the last
        one taken are skipped and it is that stage's (un-normed) tokens instead.
        ``intermediates_only`` returns only the list (and stops early).
        """
        if output_fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output_fmt must be one of {', '.join(OUTPUT_FORMATS)}, "
                             f"got {output_fmt!r}")
        take, max_index = self.feature_take_indices(indices)
        last = max_index if stop_early or intermediates_only else self.num_stages - 1
        final, intermediates = self._intermediates(x, take, last, norm, output_fmt == "NCHW")
        return intermediates if intermediates_only else (final, intermediates)

    def prune_intermediate_layers(self, indices: Indices = None, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drops the stages after the last of ``indices`` (and the head, and with
        ``prune_norm`` the final norm), as timm does for features-only models; returns the
        stage indices taken. The pruned model is for :meth:`forward_intermediates`."""
        take, max_index = self.feature_take_indices(indices)
        stages = getattr(self, self._stage_attr)
        setattr(self, self._stage_attr, stages[:max_index + 1])
        self.num_stages = max_index + 1
        self.feature_info = FeatureInfo(self.feature_info[:max_index + 1])
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take


class FeatureExtractor(nn.Module):
    """A :class:`TokenClassifier` as a backbone (``create_model(..., features_only=True)``):
    images -> the list of feature maps of the stages ``out_indices`` (see
    :meth:`TokenClassifier.feature_take_indices`), ``(B, C, H, W)`` by default.

    ``feature_info`` describes the maps (``channels()``, ``reduction()``,
    ``module_name()``); the wrapped model, pruned of what the maps do not need, is
    ``model``. Scripts with ``torch.jit.script``.
    """

    def __init__(self, model: TokenClassifier, out_indices: Indices = None, norm: bool = False,
                 output_fmt: str = "NCHW"):
        super().__init__()
        if output_fmt not in OUTPUT_FORMATS:
            raise ValueError(f"output_fmt must be one of {', '.join(OUTPUT_FORMATS)}, "
                             f"got {output_fmt!r}")
        take = model.prune_intermediate_layers(out_indices, prune_norm=not norm)
        self.model = model
        self.take_indices: List[int] = take
        self.last_index = take[-1]
        self.apply_norm = norm
        self.channels_first = output_fmt == "NCHW"
        self.feature_info = FeatureInfo(model.feature_info[i] for i in take)
        self.pretrained_cfg = self.default_cfg = model.pretrained_cfg

    def forward(self, x: Tensor) -> List[Tensor]:
        """Images ``(B, C, H, W)`` -> one feature map per taken stage."""
        return self.model._intermediates(x, self.take_indices, self.last_index,
                                         self.apply_norm, self.channels_first)[1]

