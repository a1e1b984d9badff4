"""The six published models (and tiny demo ones) as factories over config tables."""

from .classifier import FeatureExtractor, FeatureInfo, TokenClassifier
from .dynamixer import DYNAMIXER_CONFIGS, DynaMixer, DynaMixerConfig, dynamixer_l, dynamixer_m, dynamixer_s, dynamixer_tiny
from .raftmlp import RAFTMLP_CONFIGS, RaftMLP, RaftMLPConfig, raftmlp_l, raftmlp_m, raftmlp_s, raftmlp_tiny
from .registry import create_model, list_models, register_model

__all__ = [
    "DynaMixer", "DynaMixerConfig", "DYNAMIXER_CONFIGS",
    "RaftMLP", "RaftMLPConfig", "RAFTMLP_CONFIGS",
    "dynamixer_s", "dynamixer_m", "dynamixer_l", "dynamixer_tiny",
    "raftmlp_s", "raftmlp_m", "raftmlp_l", "raftmlp_tiny",
    "create_model", "list_models", "register_model",
    "TokenClassifier", "FeatureExtractor", "FeatureInfo",
]
