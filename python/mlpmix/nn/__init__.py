"""Modules built on the mlpmix operators."""

from .dynamixer import DynaMixerBlock, DynaMixerOperation
from .layers import DropPath, Mlp
from .raft import MultiScalePatchEmbedding, RaftBlock, RaftTokenMixingBlock

__all__ = [
    "DynaMixerOperation",
    "DynaMixerBlock",
    "Mlp",
    "DropPath",
    "RaftTokenMixingBlock",
    "RaftBlock",
    "MultiScalePatchEmbedding",
]
