"""Modules built on the mlpmix operators."""

from .dynamixer import DynaMixerBlock, DynaMixerOperation
from .layers import Mlp

__all__ = ["DynaMixerOperation", "DynaMixerBlock", "Mlp"]
