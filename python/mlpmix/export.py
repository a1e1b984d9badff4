"""Export trained models for C++: TorchScript files and AOTInductor packages.

Both formats call the mlpmix operators by name; the process that loads them must have the
ops library loaded (Python: ``import mlpmix``; C++: link ``mlpmix::mlpmix``).

Both can carry metadata, a JSON object stored under ``METADATA_KEY`` (TorchScript: an extra
file; AOTI: package metadata). :func:`save` records there the input shape the file accepts
(``"input_shape"``, ``-1`` for a free batch), which ``mlpmix-run`` checks inputs against,
and the ``"precision"`` of the weights (a key of :data:`PRECISIONS`).

A file saved in a lower precision still takes and returns float32: the casts are inside it
(:class:`Float32Interface`), so ``mlpmix-run`` and ``mlpmix predict`` feed it as any other.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["torchscript", "aoti", "save", "load", "Float32Interface", "FORMATS", "PRECISIONS",
           "METADATA_KEY"]

METADATA_KEY = "mlpmix.json"
#: Export formats and their file suffixes.
FORMATS = {"torchscript": ".pt", "aoti": ".pt2"}
#: Export precisions and the dtypes of their weights and computation.
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


class Float32Interface(nn.Module):
    """A copy of ``model`` cast to ``dtype`` that takes float32 input (cast to ``dtype``
    inside) and returns float32 output."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.model = copy.deepcopy(model).to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.to(self.dtype)).float()


def torchscript(model: nn.Module, path: Union[str, Path],
                metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Scripts ``model`` (in eval mode) and saves it to ``path`` (a ``.pt`` file)."""
    model.eval()
    extra_files = {METADATA_KEY: json.dumps(metadata)} if metadata is not None else {}
    torch.jit.script(model).save(str(path), _extra_files=extra_files)
    return Path(path)


def aoti(model: nn.Module, example_input: Tensor, path: Union[str, Path],
         dynamic_batch: bool = True, metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Exports ``model`` with ``torch.export`` and compiles it with AOTInductor into a
    ``.pt2`` package at ``path``; with ``dynamic_batch`` the package accepts any batch size
    (the example's other dimensions are fixed).

    Runs in C++ through ``torch::inductor::AOTIModelPackageLoader`` and in Python through
    ``torch._inductor.aoti_load_package``.
    """
    model.eval()
    if dynamic_batch and example_input.shape[0] == 1:
        # a batch of 1 would be specialised by export; 2 keeps the dimension symbolic
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=2**16)},) if dynamic_batch else None
    configs = {"aot_inductor.metadata": {METADATA_KEY: json.dumps(metadata)}} if metadata is not None else None
    with torch.no_grad():
        program = torch.export.export(model, (example_input,), dynamic_shapes=dynamic_shapes)
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=str(path), inductor_configs=configs)
    return Path(package)


def save(model: nn.Module, path: Union[str, Path], format: str, example_input: Tensor,
         dynamic_batch: bool = True, metadata: Optional[Dict[str, Any]] = None,
         precision: str = "fp32") -> Path:
    """Exports ``model`` in ``format`` (a key of :data:`FORMATS`) with ``metadata`` plus the
    ``"input_shape"`` the file accepts: ``example_input``'s, with ``-1`` for the batch when
    it is dynamic (always for TorchScript), and the ``"precision"``.

    ``precision`` (a key of :data:`PRECISIONS`) other than ``"fp32"`` exports a copy of
    ``model`` with weights in that dtype behind a :class:`Float32Interface`: the file takes
    float32 input and returns float32 output; ``model`` itself is left as it is.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    input_shape = list(example_input.shape)
    if format == "torchscript" or dynamic_batch:
        input_shape[0] = -1
    metadata = {**(metadata or {}), "input_shape": input_shape, "precision": precision}
    if precision != "fp32":
        model = Float32Interface(model, PRECISIONS[precision])
    if format == "torchscript":
        return torchscript(model, path, metadata)
    return aoti(model, example_input, path, dynamic_batch, metadata)


def load(path: Union[str, Path]) -> Tuple[Callable[[Tensor], Tensor], Dict[str, Any]]:
    """Loads a file written by :func:`save` (``.pt2``: AOTI, else TorchScript) for inference
    in Python: ``(model, metadata)``; the metadata is ``{}`` when the file has none."""
    path = str(path)
    if path.endswith(FORMATS["aoti"]):
        model = torch._inductor.aoti_load_package(path)
        text = model.get_metadata().get(METADATA_KEY, "")
    else:
        extra_files = {METADATA_KEY: ""}
        model = torch.jit.load(path, _extra_files=extra_files).eval()
        text = extra_files[METADATA_KEY]
    return model, json.loads(text) if text else {}
