"""Model registry: factories by name (``register_model``, ``list_models``, ``build_model``)."""

from __future__ import annotations

from typing import Callable, Dict, List

from torch import nn

_FACTORIES: Dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: makes ``factory`` available to ``create_model`` under its name."""
    _FACTORIES[factory.__name__] = factory
    return factory


def list_models() -> List[str]:
    """Names accepted by ``create_model``."""
    return sorted(_FACTORIES)


def build_model(name: str, **kwargs) -> nn.Module:
    """The model ``name`` built by its factory with ``kwargs`` (no checkpoint)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _FACTORIES[name](**kwargs)
