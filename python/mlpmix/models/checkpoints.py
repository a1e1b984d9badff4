"""Checkpoints saved by the authors' training code -> mlpmix state dicts (spec section 3).

The authors' module trees differ from mlpmix's: RaftMLP nests everything in
``levels.{L}.fn.{i}`` Sequentials and stores the raft LayerNorm affine vectors in raft-major
channel order ``j*r + i``; DynaMixer numbers its stages and downsamplings together in
``network.{k}``, where several configured stages in a row (each numbering its layers from 0)
make up one effective stage. :func:`from_official` renames, reorders and validates.
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from .dynamixer import DYNAMIXER_CONFIGS
from .raftmlp import RAFTMLP_CONFIGS
from .registry import build_model, list_models

__all__ = ["from_official", "is_official", "load_checkpoint", "unwrap_state_dict", "check_fits",
           "checkpoint_kwargs", "save_state_dict", "CheckpointError"]


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
    marker = "network." if arch in DYNAMIXER_CONFIGS else "levels.0.fn."
    return any(k.startswith(marker) for k in state_dict)


def from_official(arch: str, state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Converts a state dict saved by the authors' code for ``arch`` (an mlpmix model name,
    e.g. ``"raftmlp_s"``) into one that ``mlpmix.create_model(arch)`` loads strictly.

    Raises :class:`CheckpointError` listing unknown keys (no counterpart in mlpmix), missing
    keys and shape mismatches against the architecture (with the checkpoint's number of
    classes and input channels).
    """
    if arch in RAFTMLP_CONFIGS:
        converted, unknown = _convert_raftmlp(state_dict, RAFTMLP_CONFIGS[arch].raft_size)
    elif arch in DYNAMIXER_CONFIGS:
        converted, unknown = _convert_dynamixer(state_dict)
    else:
        raise ValueError(f"from_official: unknown architecture {arch!r}; available: "
                         f"{', '.join(list_models())}")
    kwargs = _size_kwargs(arch, converted)
    with torch.device("meta"):
        expected = build_model(arch, **kwargs).state_dict()
    _validate(arch, converted, expected, unknown)
    return converted


def _size_kwargs(arch: str, converted: Mapping[str, Tensor]) -> Dict[str, int]:
    """num_classes and in_chans as the checkpoint has them (what a user may have changed)."""
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


#: Keys under which training scripts nest the state dict, in the order they are looked up:
#: EMA weights first (timm's ``state_dict_ema``, DeiT's ``model_ema``), as the authors'
#: DynaMixer training evaluates and keeps its best checkpoint by them.
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")
_DDP_PREFIX = "module."
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def unwrap_state_dict(obj: Any) -> Dict[str, Tensor]:
    """The state dict inside a loaded checkpoint, as training scripts save it: ``obj``
    itself (names -> tensors) or one nested under a key of :data:`WRAPPER_KEYS` (next to
    ``epoch``, ``optimizer``, ...), at any depth. A ``module.`` prefix on every key
    (DistributedDataParallel) is removed.

    Raises :class:`CheckpointError` when ``obj`` holds no state dict.
    """
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            keys = sorted(map(str, obj))
            raise CheckpointError(
                "checkpoint: expected a state dict (names -> tensors) or a dict holding one under "
                f"{', '.join(WRAPPER_KEYS)}; got a dict with keys {', '.join(keys[:10])}"
                + (f" and {len(keys) - 10} more" if len(keys) > 10 else ""))
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise CheckpointError("checkpoint: expected a state dict (names -> tensors), got "
                              f"{type(obj).__name__}")
    if obj and all(str(k).startswith(_DDP_PREFIX) for k in obj):
        return {k[len(_DDP_PREFIX):]: v for k, v in obj.items()}
    return dict(obj)


def _read(path: Union[str, Path]) -> Any:
    """A checkpoint file as stored: ``.safetensors`` through safetensors, anything else
    (``.pth``, timm's ``.pth.tar``, ...) through ``torch.load(weights_only=True)``, which
    also accepts the ``argparse.Namespace`` that timm's CheckpointSaver stores as ``args``."""
    if Path(path).suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: holds objects that torch.load(weights_only=True) refuses to unpickle; "
            "if you trust the file, load it with weights_only=False and save the state dict "
            f"alone (torch.save(checkpoint['model'], 'weights.pth')). torch said: {e}") from e


def _img_size_kwargs(arch: str, state_dict: Mapping[str, Tensor]) -> Dict[str, int]:
    """``img_size`` as the first token mixer of an mlpmix-layout state dict gives it, when
    it is not ``arch``'s default (the token-mixing weights are tied to the input size)."""
    if arch in RAFTMLP_CONFIGS:  # mlp_v.fc1: (hidden, raft_size * H) at stride min(kernels)
        config = RAFTMLP_CONFIGS[arch]
        key, per_token, stride = ("levels.0.blocks.0.token_mixing.mlp_v.fc1.weight",
                                  config.raft_size, min(config.kernels[0]))
    else:  # generate: (N*N, N * reduced_dim) at stride patch_size
        config = DYNAMIXER_CONFIGS[arch]
        key, per_token, stride = ("stages.0.layers.0.token_mixer.mix_h.generate.weight",
                                  config.reduced_dim, config.patch_size)
    weight = state_dict.get(key)
    img_size = weight.shape[1] // per_token * stride if weight is not None and weight.dim() == 2 else 0
    return {"img_size": img_size} if img_size > 0 and img_size != config.img_size else {}


def checkpoint_kwargs(arch: str, state_dict: Mapping[str, Tensor]) -> Dict[str, int]:
    """The ``create_model(arch, ...)`` keyword arguments that an mlpmix-layout state dict
    was made with: ``num_classes``, ``in_chans`` and, when not the default, ``img_size``."""
    return {**_size_kwargs(arch, state_dict), **_img_size_kwargs(arch, state_dict)}


def check_fits(arch: str, state_dict: Mapping[str, Tensor],
               expected: Optional[Mapping[str, Tensor]] = None) -> None:
    """Raises :class:`CheckpointError` naming the missing, unexpected and mis-shaped keys of
    ``state_dict`` (mlpmix's layout) against ``expected``, a model's state dict; by default
    ``arch`` built on the meta device with :func:`checkpoint_kwargs`."""
    if arch not in list_models():
        raise ValueError(f"check_fits: unknown model {arch!r}; available: {', '.join(list_models())}")
    if expected is None:
        with torch.device("meta"):
            expected = build_model(arch, **checkpoint_kwargs(arch, state_dict)).state_dict()
    _validate(arch, state_dict, expected, [])


def load_checkpoint(arch: str, path: Union[str, Path]) -> Dict[str, Tensor]:
    """Reads a checkpoint file and returns an mlpmix state dict for ``arch`` that
    ``create_model(arch, **checkpoint_kwargs(arch, state))`` loads strictly.

    The file is ``.safetensors`` or a torch file (read with ``weights_only=True``); the
    state dict may be wrapped as training scripts save it (:func:`unwrap_state_dict`) and
    be in the authors' layout (converted by :func:`from_official`) or mlpmix's (checked by
    :func:`check_fits`). Raises :class:`CheckpointError` naming the keys that do not fit.
    """
    state = unwrap_state_dict(_read(path))
    if is_official(arch, state):
        return from_official(arch, state)
    check_fits(arch, state)
    return state


def save_state_dict(state_dict: Mapping[str, Tensor], path: Union[str, Path]) -> Path:
    """Writes ``state_dict`` to ``path``: safetensors for ``.safetensors`` (tensors made
    contiguous; ones sharing storage with an earlier one are cloned, which safetensors
    requires), a torch file for ``.pt``, ``.pth`` or ``.bin``. Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        tensors, storages = {}, set()
        for key, value in state_dict.items():
            value = value.detach().contiguous()
            storage = value.untyped_storage().data_ptr()
            tensors[key] = value.clone() if storage in storages else value
            storages.add(storage)
        save_file(tensors, str(path), metadata={"format": "pt"})
    elif suffix in _TORCH_SUFFIXES:
        torch.save(dict(state_dict), path)
    else:
        raise ValueError(f"save_state_dict: path must end in .safetensors, "
                         f"{', '.join(_TORCH_SUFFIXES)}; got {str(path)!r} (suffix {suffix!r})")
    return path
