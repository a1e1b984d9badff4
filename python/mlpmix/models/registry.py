"""Model registry: factories by name, ``create_model`` and ``list_models``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

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
    name: str, checkpoint_path: Optional[Union[str, Path]] = None, **kwargs
) -> nn.Module:
    """Builds the model ``name`` (see :func:`list_models`) with the factory's ``kwargs``.

    ``checkpoint_path`` loads a state dict saved either by mlpmix or by the authors'
    training code (converted with :func:`mlpmix.convert.from_official`); it is read with
    ``weights_only=True`` and loaded strictly.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _FACTORIES[name](**kwargs)
    if checkpoint_path is not None:
        from ..convert import load_checkpoint

        model.load_state_dict(load_checkpoint(name, checkpoint_path))
    return model
