"""mlpmix.timm registers the models through timm's registry API.

Real timm needs torchvision, which cannot be installed beside the CPU torch wheel on the
project's machines, so when timm is absent a minimal stand-in with timm's registry
contract (register_model by function name; create_model passing pretrained and
pretrained_cfg keywords) checks the integration; with timm installed the real one does.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch


@pytest.fixture
def timm(monkeypatch):
    try:
        import timm as real

        return real
    except ImportError:
        pass
    registry = {}
    fake = types.ModuleType("timm")
    fake.models = types.ModuleType("timm.models")

    def register_model(fn):
        registry[fn.__name__] = fn
        return fn

    def create_model(name, pretrained=False, **kwargs):
        return registry[name](pretrained=pretrained, pretrained_cfg=None,
                              pretrained_cfg_overlay=None, **kwargs)

    fake.models.register_model = register_model
    fake.create_model = create_model
    fake.list_models = lambda pattern="*": sorted(registry)
    monkeypatch.setitem(sys.modules, "timm", fake)
    monkeypatch.setitem(sys.modules, "timm.models", fake.models)
    monkeypatch.delitem(sys.modules, "mlpmix.timm", raising=False)
    return fake


def test_models_are_registered_with_timm(timm):
    importlib.import_module("mlpmix.timm")
    assert {"mlpmix_dynamixer_s", "mlpmix_raftmlp_l"} <= set(timm.list_models("mlpmix_*"))
    model = timm.create_model("mlpmix_dynamixer_tiny", num_classes=10, in_chans=1)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("mlpmix_raftmlp_s", pretrained=True)
