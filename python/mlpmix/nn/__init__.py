"""Modules built on the mlpmix operators."""

from .dynamixer import DynaMixerBlock, DynaMixerOperation
from .layers import ChannelMlp, DropPath, Mlp
from .raft import MultiScalePatchEmbedding, RaftBlock, RaftTokenMixingBlock

__all__ = [
    "DynaMixerOperation",
    "DynaMixerBlock",
    "Mlp",
    "ChannelMlp",
    "DropPath",
    "RaftTokenMixingBlock",
    "RaftBlock",
    "MultiScalePatchEmbedding",
]
