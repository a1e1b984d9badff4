"""``create_model``: a registered model, optionally with a checkpoint and as a backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from torch import nn

from .checkpoints import load_checkpoint
from .classifier import FeatureExtractor
from .registry import build_model


def create_model(
    name: str, checkpoint_path: Optional[Union[str, Path]] = None, *,
    features_only: bool = False, out_indices: Optional[Union[int, Sequence[int]]] = None,
    feature_cfg: Optional[Dict[str, Any]] = None, **kwargs
) -> nn.Module:
    """Builds the model ``name`` (see ``list_models``) with the factory's ``kwargs``.

    ``checkpoint_path`` loads a state dict saved either by mlpmix or by the authors'
    training code (:func:`mlpmix.convert.load_checkpoint`: torch files read with
    ``weights_only=True`` or ``.safetensors``), strictly.

    ``features_only=True`` returns the model as a backbone, timm-style: a
    :class:`~mlpmix.models.classifier.FeatureExtractor` whose forward gives the feature
    maps ``(B, C, H, W)`` of the stages ``out_indices`` (default: all; an int ``n``: the
    last ``n``) and whose ``feature_info`` describes them; ``feature_cfg`` may pass its
    ``norm`` and ``output_fmt``. The checkpoint is loaded before the head is pruned.
    """
    model = build_model(name, **kwargs)
    if checkpoint_path is not None:
        model.load_state_dict(load_checkpoint(name, checkpoint_path))
    if features_only:
        return FeatureExtractor(model, out_indices, **(feature_cfg or {}))
    return model
