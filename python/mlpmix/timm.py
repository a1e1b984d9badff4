"""Registers the mlpmix models with timm: after ``import mlpmix.timm``,
``timm.create_model("mlpmix_dynamixer_s", num_classes=10)`` builds mlpmix's model.

timm is optional; importing this module without it raises ImportError. No pretrained
weights are published for these architectures: ``pretrained=True`` raises, use
``checkpoint_path=`` (timm's own keyword) with a checkpoint you trained.
"""

from __future__ import annotations

from timm.models import register_model

from .models import create_model, list_models

PREFIX = "mlpmix_"


def _timm_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None,
                   **kwargs):
        if pretrained:
            raise ValueError(f"{PREFIX}{name}: no pretrained weights are published; load your "
                             "own with checkpoint_path=...")
        return create_model(name, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = PREFIX + name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"mlpmix {name} (see mlpmix.create_model)."
    return entrypoint


for _name in list_models():
    register_model(_timm_entrypoint(_name))
