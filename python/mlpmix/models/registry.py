"""Model registry: factories by name, ``create_model`` and ``list_models``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

_FACTORIES: Dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: makes ``factory`` available to :func:`create_model` under its name."""
    _FACTORIES[factory.__name__] = factory
    return factory


def list_models() -> List[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_FACTORIES)


def create_model(
    name: str, checkpoint_path: Optional[Union[str, Path]] = None, *,
    features_only: bool = False, out_indices: Optional[Union[int, Sequence[int]]] = None,
    feature_cfg: Optional[Dict[str, Any]] = None, **kwargs
) -> nn.Module:
    """Builds the model ``name`` (see :func:`list_models`) with the factory's ``kwargs``.

    ``checkpoint_path`` loads a state dict saved either by mlpmix or by the authors'
    training code (converted with :func:`mlpmix.convert.from_official`); it is read with
    ``weights_only=True`` and loaded strictly.

    ``features_only=True`` returns the model as a backbone, timm-style: a
    :class:`~mlpmix.models.classifier.FeatureExtractor` whose forward gives the feature
    maps ``(B, C, H, W)`` of the stages ``out_indices`` (default: all; an int ``n``: the
    last ``n``) and whose ``feature_info`` describes them; ``feature_cfg`` may pass its
    ``norm`` and ``output_fmt``. The checkpoint is loaded before the head is pruned.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _FACTORIES[name](**kwargs)
    if checkpoint_path is not None:
        from ..convert import load_checkpoint

        model.load_state_dict(load_checkpoint(name, checkpoint_path))
    if features_only:
        from .classifier import FeatureExtractor

        return FeatureExtractor(model, out_indices, **(feature_cfg or {}))
    return model
