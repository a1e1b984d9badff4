"""The deployment runtimes the suite times a model's inference in (the ``runtime`` backends
of ``implementations.BACKENDS``), beside eager PyTorch, on CPU:

- ``aoti``: the AOTInductor package of the mlpmix model (``mlpmix.export.aoti``), loaded
  with ``mlpmix.export.load``;
- ``onnxruntime``: its ONNX file (``mlpmix.export.onnx``) in an onnxruntime
  ``CPUExecutionProvider`` session (``mlpmix.onnx_export.OnnxRuntimeModel``);
  ``onnxruntime+int8``: that file quantized by ``mlpmix.export.quantize_int8`` (int8 weights
  per channel, activations quantized at run time);
- ``openvino``: the same ONNX file compiled for OpenVINO's CPU plugin in float32
  (``INFERENCE_PRECISION_HINT=f32``: its default on a bf16-capable CPU is bf16).

Each model is exported once per process and file format, with a free batch dimension (one
file serves every batch), into a temporary directory. Building a step exports and loads;
the timed calls only run. A step passes the float32 images as they are (a numpy view of
the tensor for onnxruntime and OpenVINO) and returns the logits as a tensor.

The runtimes run on torch's thread count when the step is built, which ``timing`` and
``memory`` set to the run's first: onnxruntime's ``intra_op_num_threads``, OpenVINO's
``INFERENCE_NUM_THREADS``; the AOTI package runs on torch's threads.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor, nn

import mlpmix
from mlpmix import export, onnx_export

from .implementations import backend

Run = Callable[[Tensor], Tensor]


def _aoti(path: Path, threads: int) -> Run:
    model, _ = export.load(path)
    return model


def _onnxruntime(path: Path, threads: int) -> Run:
    return onnx_export.OnnxRuntimeModel(path, threads)


def _openvino(path: Path, threads: int) -> Run:
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        # one stream on all the threads: THROUGHPUT would split them between streams, of
        # which one request uses one
        "PERFORMANCE_HINT": "LATENCY",
    })
    request = compiled.create_infer_request()

    def run(images: Tensor) -> Tensor:
        request.infer({0: images.numpy()}, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data)
    return run


# Each runtime implementation: the file it runs (a key of _SUFFIXES) and what runs it.
RUNTIMES: Dict[str, Tuple[str, Callable[[Path, int], Run]]] = {
    "aoti": ("aoti", _aoti),
    "onnxruntime": ("onnx", _onnxruntime),
    "onnxruntime+int8": ("int8", _onnxruntime),
    "openvino": ("onnx", _openvino),
}
_SUFFIXES = {"aoti": ".pt2", "onnx": ".onnx", "int8": ".int8.onnx"}
_files: Dict[Tuple[str, str], Path] = {}


@lru_cache(maxsize=None)
def _directory() -> tempfile.TemporaryDirectory:
    """Where the exported files go; removed when the process exits."""
    return tempfile.TemporaryDirectory(prefix="mlpmix-bench-")


def exported(name: str, model: nn.Module, images: Tensor, form: str, implementation: str) -> Path:
    """The file of model ``name`` in ``form`` (``aoti``, ``onnx``, ``int8``), exported from
    ``model`` on ``images`` under ``mlpmix.implementation.use(implementation)`` on first
    use, the same file after: every case builds its model seeded alike."""
    key = (name, form)
    if key not in _files:
        path = Path(_directory().name) / f"{name}{_SUFFIXES[form]}"
        if form == "int8":
            export.quantize_int8(exported(name, model, images, "onnx", implementation), path)
        else:
            write = export.aoti if form == "aoti" else export.onnx
            with mlpmix.implementation.use(implementation):
                write(model, images, path, dynamic_batch=True)
        _files[key] = path
    return _files[key]


def step(name: str, model: nn.Module, images: Tensor, impl: str) -> Callable[[], Tensor]:
    """The inference of model ``name`` (``model``, in eval mode, on ``images``) as the
    runtime implementation ``impl`` runs it, on torch's current thread count."""
    form, load = RUNTIMES[impl]
    run = load(exported(name, model, images, form, backend(impl)), torch.get_num_threads())
    return lambda: run(images)
