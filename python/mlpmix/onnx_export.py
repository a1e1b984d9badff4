"""The ONNX side of :mod:`mlpmix.export`: an exported program written as a graph of standard
ONNX ops, its int8 version, and onnxruntime sessions that take and return torch tensors.

ONNX has no mlpmix ops. Before translation each ``torch.ops.mlpmix`` op of the program is
decomposed into its :mod:`mlpmix.reference` function (the spec, in plain PyTorch), which
``torch.onnx`` turns into default-domain ONNX ops: the file needs no mlpmix, no torch and no
custom-op library where it runs (onnxruntime, OpenVINO, TensorRT, ...).

Needs the ``onnx`` extra (onnx, onnxscript, onnxruntime, openvino); imported lazily.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import unittest.mock
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, Optional, Union

import torch
from torch import Tensor

from . import reference


def require(module: str) -> ModuleType:
    """Imports ``module``, or raises an ImportError saying that ONNX export needs the
    ``onnx`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"ONNX export and inference need {module.split('.')[0]!r}, which is "
                          "not installed; install the onnx extra: pip install 'mlpmix[onnx]'"
                          ) from error


@contextlib.contextmanager
def warnings_silenced(logger: str) -> Iterator[None]:
    """Hides the warnings of ``logger`` ("" for the root logger) in the enclosed code."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def reference_decompositions() -> Dict[Any, Callable[..., Tensor]]:
    """``{torch.ops.mlpmix.<op>.default: mlpmix.reference.<op>}`` for every op, the table
    for ``ExportedProgram.run_decompositions`` (the references take the ops' arguments)."""
    return {getattr(torch.ops.mlpmix, name).default: getattr(reference, name)
            for name in reference.__all__}


def write(program: torch.export.ExportedProgram, path: Union[str, Path], opset: int,
          dynamic_shapes: Optional[tuple], metadata_props: Dict[str, str]) -> Path:
    """Decomposes ``program``'s mlpmix ops into their references, translates it into ONNX
    opset ``opset`` (input ``"input"``, output ``"output"``, the symbolic dimensions named
    as in ``dynamic_shapes``) and saves it with ``metadata_props`` at ``path``."""
    require("onnxscript")
    # torch.onnx warns that torchvision's ops cannot be registered when it is not installed
    with warnings_silenced("torch.onnx._internal.exporter._registration"), \
            references_in_torch_onnx_decompositions() as decomposed_by_torch_onnx:
        if not decomposed_by_torch_onnx:
            program = program.run_decompositions(reference_decompositions())
        onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset,
                                         verbose=False, input_names=["input"],
                                         output_names=["output"], dynamic_shapes=dynamic_shapes,
                                         optimize=False)
    optimize(onnx_program)
    onnx_program.model.metadata_props.update(metadata_props)
    onnx_program.save(str(path))
    return Path(path)


@contextlib.contextmanager
def references_in_torch_onnx_decompositions() -> Iterator[bool]:
    """In the enclosed code, ``torch.onnx.export``'s own decomposition of the program (into
    the ATen ops that ONNX implements) also decomposes the mlpmix ops into their references;
    yields False, changing nothing, when torch.onnx's private table function is gone (the
    caller then decomposes them first, with :func:`reference_decompositions`).

    Each decomposition pass retraces the whole program: with one pass instead of two,
    DynaMixer-S exports in 15 s instead of 24 and DynaMixer-L in 30 s instead of 48 (2
    threads), into the same graph."""
    try:
        tables = importlib.import_module("torch.onnx._internal.exporter._decomp")
        onnx_table = tables.create_onnx_friendly_decomposition_table
    except (ImportError, AttributeError):
        yield False
        return

    def with_references(*args: Any, **kwargs: Any) -> Dict[Any, Callable[..., Tensor]]:
        return {**onnx_table(*args, **kwargs), **reference_decompositions()}

    with unittest.mock.patch.object(tables, "create_onnx_friendly_decomposition_table",
                                    with_references):
        yield True


def optimize(onnx_program: "torch.onnx.ONNXProgram") -> None:
    """``onnx_program.optimize()``, torch.onnx's own optimization (onnxscript's constant
    folding, rewrite rules and fusions), without the rule ``SlicesSplit`` when the graph has
    no ``Slice``, which the rule needs.

    That rule's pattern has two outputs (two Slices of one tensor), which onnxscript matches
    by trying node pairs: its time grows with the square of the graph's size. It took 6 of
    the 29 s that DynaMixer-S's export took and 26 of DynaMixer-L's 69 s (2 threads); the
    graphs of the references have no Slice, so the file is the same without it."""
    rewriter = require("onnxscript.rewriter")
    rules = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)  # private: may go away
    if rules is None or any(node.op_type == "Slice"
                            for node in onnx_program.model.graph.all_nodes()):
        onnx_program.optimize()
        return
    without = tuple(rule for rule in rules if rule.name != "SlicesSplit")
    with unittest.mock.patch.object(rewriter, "_DEFAULT_REWRITE_RULES", without):
        onnx_program.optimize()


def read_metadata_props(path: Union[str, Path]) -> Dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path``."""
    model = require("onnx").load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def quantize_int8(src: Union[str, Path], dst: Union[str, Path],
                  metadata_props: Dict[str, str]) -> Path:
    """onnxruntime's dynamic quantization of the ONNX file ``src`` into ``dst``: the weights
    of the matrix products with a constant operand (the linear layers) stored as int8, per
    output channel; their input activations quantized to uint8 at run time. ``dst``
    carries ``metadata_props`` (besides the quantizer's own)."""
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    # It warns on the root logger that onnxruntime's pre-processing (shape inference, graph
    # optimization) was not run: on RaftMLP-S that gave the same error and no speed.
    with warnings_silenced(""):
        quantization.quantize_dynamic(str(src), str(dst), per_channel=True,
                                      weight_type=quantization.QuantType.QInt8)
    model = onnx.load(str(dst))
    quantizer_props = {prop.key: prop.value for prop in model.metadata_props}
    onnx.helper.set_model_props(model, {**quantizer_props, **metadata_props})
    onnx.save(model, str(dst))
    return Path(dst)


class OnnxRuntimeModel:
    """An onnxruntime ``CPUExecutionProvider`` session on an ONNX file of one input and one
    output, called like the torch model: a float32 tensor in, a tensor out. ``threads``
    sets the session's intra-op threads (None: onnxruntime's default, one per physical
    core); a session's threads are its own, not torch's."""

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        #: The file's ``metadata_props``.
        self.metadata_props: Dict[str, str] = dict(
            self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: Tensor) -> Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (output,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(output)
