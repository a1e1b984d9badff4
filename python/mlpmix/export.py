"""Export trained models for C++ (TorchScript files and AOTInductor packages) and for ONNX
runtimes (onnxruntime, OpenVINO, ...).

TorchScript and AOTI files call the mlpmix operators by name; the process that loads them
must have the ops library loaded (Python: ``import mlpmix``; C++: link ``mlpmix::mlpmix``).
ONNX files hold only standard ONNX ops (the mlpmix ops decomposed into their
:mod:`mlpmix.reference` functions) and need the ``onnx`` extra to write and to run here.

All three can carry metadata, a JSON object stored under ``METADATA_KEY`` (TorchScript: an
extra file; AOTI: package metadata; ONNX: ``metadata_props``). :func:`save` records there
the input shape the file accepts (``"input_shape"``, ``-1`` for a free batch), which
``mlpmix-run`` checks inputs against, and the ``"precision"`` of the weights (a key of
:data:`PRECISIONS`, or ``"int8"`` for a file from :func:`quantize_int8`).

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

from . import onnx_export

__all__ = ["torchscript", "aoti", "onnx", "quantize_int8", "save", "load", "Float32Interface",
           "FORMATS", "PRECISIONS", "METADATA_KEY"]

METADATA_KEY = "mlpmix.json"
#: Export formats and their file suffixes.
FORMATS = {"torchscript": ".pt", "aoti": ".pt2", "onnx": ".onnx"}
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


def batch_shapes(dynamic_batch: bool) -> Optional[tuple]:
    """``torch.export``'s ``dynamic_shapes`` for one input whose first dimension, named
    ``batch``, is free when ``dynamic_batch`` (None: every dimension fixed)."""
    return ({0: torch.export.Dim("batch", min=1, max=2**16)},) if dynamic_batch else None


def exported_program(model: nn.Module, example_input: Tensor,
                     dynamic_batch: bool) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in eval mode, without autograd, on ``example_input``;
    with ``dynamic_batch`` its batch is free (the example's other dimensions are fixed)."""
    model.eval()
    if dynamic_batch and example_input.shape[0] == 1:
        # a batch of 1 would be specialised by export; 2 keeps the dimension symbolic
        example_input = example_input.expand(2, *example_input.shape[1:]).contiguous()
    with torch.no_grad():
        return torch.export.export(model, (example_input,),
                                   dynamic_shapes=batch_shapes(dynamic_batch))


def aoti(model: nn.Module, example_input: Tensor, path: Union[str, Path],
         dynamic_batch: bool = True, metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Exports ``model`` with ``torch.export`` and compiles it with AOTInductor into a
    ``.pt2`` package at ``path``; with ``dynamic_batch`` the package accepts any batch size
    (the example's other dimensions are fixed).

    Runs in C++ through ``torch::inductor::AOTIModelPackageLoader`` and in Python through
    ``torch._inductor.aoti_load_package``.
    """
    # export's symbolic batch ranges from 2 (it specialises 0 and 1), and the package's own
    # input check (AOTI_RUNTIME_CHECK_INPUTS=1, as mlpmix-run sets it) would then refuse a
    # batch of 1, which the compiled code computes like any other
    configs: Dict[str, Any] = {"aot_inductor.check_lowerbound": False}
    if metadata is not None:
        configs["aot_inductor.metadata"] = {METADATA_KEY: json.dumps(metadata)}
    program = exported_program(model, example_input, dynamic_batch)
    with torch.no_grad():
        package = torch._inductor.aoti_compile_and_package(
            program, package_path=str(path), inductor_configs=configs)
    return Path(package)


def onnx(model: nn.Module, example_input: Tensor, path: Union[str, Path],
         dynamic_batch: bool = True, opset: int = 20,
         metadata: Optional[Dict[str, Any]] = None) -> Path:
    """Exports ``model`` with ``torch.export``, decomposes its mlpmix ops into their
    :mod:`mlpmix.reference` functions and writes it with ``torch.onnx`` as an ONNX file of
    default-domain ops (opset ``opset``) at ``path``: input ``"input"``, output
    ``"output"``; with ``dynamic_batch`` the batch is a free dimension named ``batch``.
    ``metadata`` goes into the file's ``metadata_props`` under :data:`METADATA_KEY`.

    Runs wherever ONNX runs (onnxruntime, OpenVINO, ...), without mlpmix or torch; in Python
    with :func:`load`. Needs the ``onnx`` extra.
    """
    props = {METADATA_KEY: json.dumps(metadata)} if metadata is not None else {}
    program = exported_program(model, example_input, dynamic_batch)
    return onnx_export.write(program, path, opset, batch_shapes(dynamic_batch), props)


def quantize_int8(src: Union[str, Path], dst: Union[str, Path]) -> Path:
    """Writes ``dst``, the ONNX file ``src`` with onnxruntime's dynamic quantization: the
    weights of its linear layers stored as int8 per output channel, their input activations
    quantized at run time. The metadata is kept, with ``"precision": "int8"``.

    The published models' files shrink to under a third (RaftMLP-S: 40 MB to 11 MB).
    Needs the ``onnx`` extra."""
    props = onnx_export.read_metadata_props(src)
    if METADATA_KEY in props:
        props[METADATA_KEY] = json.dumps({**json.loads(props[METADATA_KEY]), "precision": "int8"})
    return onnx_export.quantize_int8(src, dst, props)


def save(model: nn.Module, path: Union[str, Path], format: str, example_input: Tensor,
         dynamic_batch: bool = True, metadata: Optional[Dict[str, Any]] = None,
         precision: str = "fp32") -> Path:
    """Exports ``model`` in ``format`` (a key of :data:`FORMATS`) with ``metadata`` plus the
    ``"input_shape"`` the file accepts: ``example_input``'s, with ``-1`` for the batch when
    it is dynamic (always for TorchScript), and the ``"precision"``.

    ``precision`` (a key of :data:`PRECISIONS`) other than ``"fp32"`` exports a copy of
    ``model`` with weights in that dtype behind a :class:`Float32Interface`: the file takes
    float32 input and returns float32 output; ``model`` itself is left as it is. ONNX files
    are ``"fp32"`` only; :func:`quantize_int8` makes them int8.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if format == "onnx" and precision != "fp32":
        # onnxruntime's CPU kernels lack bfloat16 for some of the graph's ops (Pad)
        raise ValueError(f"format 'onnx' takes precision 'fp32', got {precision!r}; for a "
                         "smaller, faster ONNX file quantize it to int8 "
                         "(mlpmix.export.quantize_int8, `mlpmix export --int8`)")
    input_shape = list(example_input.shape)
    if format == "torchscript" or dynamic_batch:
        input_shape[0] = -1
    metadata = {**(metadata or {}), "input_shape": input_shape, "precision": precision}
    if precision != "fp32":
        model = Float32Interface(model, PRECISIONS[precision])
    if format == "torchscript":
        return torchscript(model, path, metadata)
    if format == "onnx":
        return onnx(model, example_input, path, dynamic_batch, metadata=metadata)
    return aoti(model, example_input, path, dynamic_batch, metadata)


def load(path: Union[str, Path]) -> Tuple[Callable[[Tensor], Tensor], Dict[str, Any]]:
    """Loads a file written by :func:`save` or :func:`quantize_int8` (``.pt2``: AOTI,
    ``.onnx``: ONNX, run by onnxruntime on the CPU; else TorchScript) for inference in
    Python: ``(model, metadata)``, the model a function from a float32 batch to a tensor;
    the metadata is ``{}`` when the file has none."""
    path = str(path)
    if path.endswith(FORMATS["onnx"]):
        model = onnx_export.OnnxRuntimeModel(path)
        text = model.metadata_props.get(METADATA_KEY, "")
    elif path.endswith(FORMATS["aoti"]):
        model = torch._inductor.aoti_load_package(path)
        text = model.get_metadata().get(METADATA_KEY, "")
    else:
        extra_files = {METADATA_KEY: ""}
        model = torch.jit.load(path, _extra_files=extra_files).eval()
        text = extra_files[METADATA_KEY]
    return model, json.loads(text) if text else {}
