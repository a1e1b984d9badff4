"""Checkpoints saved by the authors' training code -> mlpmix state dicts (spec section 3).

The authors' module trees differ from mlpmix's: RaftMLP nests everything in
``levels.{L}.fn.{i}`` Sequentials and stores the raft LayerNorm affine vectors in raft-major
channel order ``j*r + i``; DynaMixer numbers its stages and downsamplings together in
``network.{k}``, where several configured stages in a row (each numbering its layers from 0)
make up one effective stage. :func:`from_official` renames, reorders and validates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor

__all__ = ["from_official", "is_official", "load_checkpoint", "CheckpointError"]


class CheckpointError(ValueError):
    """A state dict that does not fit the architecture; the message lists the mismatches."""


def _raft_major_to_natural(t: Tensor, raft_size: int) -> Tensor:
    # authors' index j*r + i  ->  mlpmix channel i*o + j
    return t.reshape(-1, raft_size).t().reshape(-1)


_RAFT_BLOCK = r"levels\.(\d+)\.fn\.(\d+)\."
_RAFTMLP_RULES: List[Tuple[str, str, bool]] = [
    (r"levels\.(\d+)\.fn\.0\.fc\.(weight|bias)", "levels.{0}.embed.proj.{1}", False),
    (_RAFT_BLOCK + r"1\.norm\.1\.(weight|bias)", "levels.{0}.blocks.{b}.token_mixing.norm_v.{2}", True),
    (_RAFT_BLOCK + r"1\.fn\.0\.(weight|bias)", "levels.{0}.blocks.{b}.token_mixing.mlp_v.fc1.{2}", False),
    (_RAFT_BLOCK + r"1\.fn\.3\.(weight|bias)", "levels.{0}.blocks.{b}.token_mixing.mlp_v.fc2.{2}", False),
    (_RAFT_BLOCK + r"3\.norm\.1\.(weight|bias)", "levels.{0}.blocks.{b}.token_mixing.norm_h.{2}", True),
    (_RAFT_BLOCK + r"3\.fn\.0\.(weight|bias)", "levels.{0}.blocks.{b}.token_mixing.mlp_h.fc1.{2}", False),
    (_RAFT_BLOCK + r"3\.fn\.3\.(weight|bias)", "levels.{0}.blocks.{b}.token_mixing.mlp_h.fc2.{2}", False),
    (_RAFT_BLOCK + r"5\.norm\.(weight|bias)", "levels.{0}.blocks.{b}.norm_c.{2}", False),
    (_RAFT_BLOCK + r"5\.fn\.0\.(weight|bias)", "levels.{0}.blocks.{b}.mlp_c.fc1.{2}", False),
    (_RAFT_BLOCK + r"5\.fn\.3\.(weight|bias)", "levels.{0}.blocks.{b}.mlp_c.fc2.{2}", False),
    (r"heads\.0\.1\.(weight|bias)", "norm.{0}", False),
    (r"classifier\.(weight|bias)", "head.{0}", False),
]


def _convert_raftmlp(state_dict: Mapping[str, Tensor], raft_size: int) -> Tuple[Dict[str, Tensor], List[str]]:
    out: Dict[str, Tensor] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        match, target, raft_major = next(
            ((m, t, rm) for p, t, rm in _RAFTMLP_RULES if (m := re.fullmatch(p, key))),
            (None, "", False))
        # Sequential index i >= 2 of a level is its block i - 2.
        block = int(match.group(2)) - 2 if match and "{b}" in target else 0
        if match is None or block < 0:
            unknown.append(key)
            continue
        out[target.format(*match.groups(), b=block)] = (
            _raft_major_to_natural(value, raft_size) if raft_major else value)
    return out, unknown


_DYNAMIXER_LAYER = re.compile(r"network\.(\d+)\.(\d+)\.(.+)")
_DYNAMIXER_DOWNSAMPLE = re.compile(r"network\.(\d+)\.proj\.(weight|bias)")
_DYNAMIXER_FIXED = {"patch_embed.proj.weight": "stem.weight", "patch_embed.proj.bias": "stem.bias",
                    "norm.weight": "norm.weight", "norm.bias": "norm.bias",
                    "head.weight": "head.weight", "head.bias": "head.bias"}


def _convert_dynamixer(state_dict: Mapping[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    # network.{k} holds the authors' configured stages (Sequentials, each numbering its layers
    # from 0) and downsamplings. A downsampling opens the next effective stage; consecutive
    # Sequentials with none between them continue one effective stage's layer numbering.
    downsamples = sorted({int(m.group(1)) for k in state_dict
                          if (m := _DYNAMIXER_DOWNSAMPLE.fullmatch(k))})
    lengths: Dict[int, int] = {}
    for key in state_dict:
        if m := _DYNAMIXER_LAYER.fullmatch(key):
            k, n = int(m.group(1)), int(m.group(2))
            lengths[k] = max(lengths.get(k, 0), n + 1)

    def stage_of(k: int) -> int:
        return sum(1 for d in downsamples if d <= k)

    def first_layer_of(k: int) -> int:
        return sum(n for j, n in lengths.items() if j < k and stage_of(j) == stage_of(k))

    out: Dict[str, Tensor] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        if key in _DYNAMIXER_FIXED:
            out[_DYNAMIXER_FIXED[key]] = value
        elif m := _DYNAMIXER_DOWNSAMPLE.fullmatch(key):
            out[f"stages.{stage_of(int(m.group(1)))}.downsample.{m.group(2)}"] = value
        elif m := _DYNAMIXER_LAYER.fullmatch(key):
            k = int(m.group(1))
            rest = re.sub(r"^attn\.", "token_mixer.", m.group(3))
            out[f"stages.{stage_of(k)}.layers.{first_layer_of(k) + int(m.group(2))}.{rest}"] = value
        else:
            unknown.append(key)
    return out, unknown


def is_official(arch: str, state_dict: Mapping[str, Tensor]) -> bool:
    """Whether ``state_dict`` has the authors' layout (rather than mlpmix's) for ``arch``."""
    marker = "network." if arch.startswith("dynamixer") else "levels.0.fn."
    return any(k.startswith(marker) for k in state_dict)


def from_official(arch: str, state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Converts a state dict saved by the authors' code for ``arch`` (an mlpmix model name,
    e.g. ``"raftmlp_s"``) into one that ``mlpmix.create_model(arch)`` loads strictly.

    Raises :class:`CheckpointError` listing unknown keys (no counterpart in mlpmix), missing
    keys and shape mismatches against the architecture (with the checkpoint's number of
    classes and input channels).
    """
    from .models import RAFTMLP_CONFIGS, create_model

    if arch.startswith("raftmlp"):
        if arch not in RAFTMLP_CONFIGS:
            raise ValueError(f"unknown RaftMLP architecture {arch!r}")
        converted, unknown = _convert_raftmlp(state_dict, RAFTMLP_CONFIGS[arch].raft_size)
    elif arch.startswith("dynamixer"):
        converted, unknown = _convert_dynamixer(state_dict)
    else:
        raise ValueError(f"from_official: unknown architecture {arch!r}")
    kwargs = _size_kwargs(arch, converted)
    with torch.device("meta"):
        expected = create_model(arch, **kwargs).state_dict()
    _validate(arch, converted, expected, unknown)
    return converted


def _size_kwargs(arch: str, converted: Mapping[str, Tensor]) -> Dict[str, int]:
    """num_classes and in_chans as the checkpoint has them (what a user may have changed)."""
    from .models import RAFTMLP_CONFIGS

    kwargs = {}
    if "head.weight" in converted:
        kwargs["num_classes"] = converted["head.weight"].shape[0]
    if "stem.weight" in converted:
        kwargs["in_chans"] = converted["stem.weight"].shape[1]
    if "levels.0.embed.proj.weight" in converted:
        window = sum(k * k for k in RAFTMLP_CONFIGS[arch].kernels[0])
        kwargs["in_chans"] = converted["levels.0.embed.proj.weight"].shape[1] // window
    return kwargs


def _validate(arch: str, converted: Mapping[str, Tensor], expected: Mapping[str, Tensor],
              unknown: List[str]) -> None:
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(converted[k].shape)}, model {tuple(expected[k].shape)}"
              for k in sorted(set(converted) & set(expected))
              if converted[k].shape != expected[k].shape]
    problems = []
    if unknown:
        problems.append("unknown keys (not in the authors' layout): " + ", ".join(sorted(unknown)))
    if unexpected:
        problems.append("keys that do not exist in this architecture: " + ", ".join(unexpected))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if problems:
        raise CheckpointError(f"checkpoint does not fit {arch}:\n  " + "\n  ".join(problems))


def load_checkpoint(arch: str, path: Union[str, Path]) -> Dict[str, Tensor]:
    """Reads a checkpoint file (``weights_only=True``) in either layout and returns an
    mlpmix state dict for ``arch``. A ``{"state_dict": ...}`` or ``{"model": ...}``
    wrapper, as training scripts save, is unwrapped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return from_official(arch, state) if is_official(arch, state) else dict(state)
