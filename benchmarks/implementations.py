"""The implementations compared in every case, as data.

An implementation's name is ``BACKEND[+PRECISION][+compile]``:

- ``BACKEND`` (a key of ``BACKENDS``): ``reference`` (the eager reference, plain PyTorch as
  the authors wrote the models: ``mlpmix.implementation.use("reference")``) or ``mlpmix``
  (the fused ops); or a deployment runtime that runs the mlpmix model exported to a file
  (``benchmarks/runtimes.py``, model inference only): ``aoti`` (AOTInductor),
  ``onnxruntime``, ``openvino`` (both on the ONNX file);
- ``PRECISION`` (a key of ``PRECISIONS``, those the backend lists): none for float32;
  ``bf16`` for CPU bfloat16 autocast (``torch.autocast(device, dtype=torch.bfloat16)``
  around the forward, float32 parameters and inputs); ``bf16w`` for bfloat16 weights
  (``model.to(torch.bfloat16)`` and bfloat16 inputs; inference only); ``int8`` for
  onnxruntime's dynamic quantization of the ONNX file;
- ``+compile``: ``torch.compile`` of it (the eager backends only).

Each implementation's speedups are taken against its **baseline**, the eager reference in
the same precision (``reference`` for the float32 ones, ``reference+bf16`` for the ``+bf16``
ones, ``reference+bf16w`` for the ``+bf16w`` ones, ``reference`` for ``+int8``, which the
reference does not run), and, for every one, against the float32 eager reference
``reference``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch

import mlpmix

REFERENCE = "reference"


@dataclass(frozen=True)
class Precision:
    """How an implementation runs a case: under ``autocast`` (a dtype, or None), with the
    model's parameters and the inputs cast to ``weights`` (a dtype, or None), on the cases
    of ``kinds`` (None: every kind)."""
    suffix: str
    description: str
    autocast: Optional[torch.dtype] = None
    weights: Optional[torch.dtype] = None
    kinds: Optional[Tuple[str, ...]] = None

    @property
    def products(self) -> Optional[torch.dtype]:
        """The dtype its matrix products run in, whose peak its rows' fraction of peak is
        of (None: the case's own, float32 but for the CUDA models; int8's too, as no int8
        peak is measured)."""
        return self.autocast or self.weights


PRECISIONS = {
    "": Precision("", "float32"),
    "bf16": Precision("bf16", "bfloat16 autocast", autocast=torch.bfloat16),
    "bf16w": Precision("bf16w", "bfloat16 weights and inputs", weights=torch.bfloat16,
                       kinds=("inference",)),
    "int8": Precision("int8", "int8 weights per channel, activations quantized at run time "
                              "(onnxruntime's dynamic quantization)", kinds=("inference",)),
}
EAGER_PRECISIONS = ("", "bf16", "bf16w")
# What mlpmix.export.onnx writes the ONNX file with.
ONNX_PACKAGES = ("onnx", "onnxscript")


@dataclass(frozen=True)
class Backend:
    """What runs a case. ``implementation``: the ``mlpmix.implementation`` its ops run with
    (a runtime's: the one its model is exported with); ``precisions``: the keys of
    ``PRECISIONS`` it runs; ``runtime``: what runs the model exported to a file
    (``benchmarks/runtimes.py``; empty: eager PyTorch): model inference only, never
    compiled; ``packages``: the Python packages it needs beyond torch (the ``onnx``
    extra)."""
    implementation: str
    precisions: Tuple[str, ...] = EAGER_PRECISIONS
    runtime: str = ""
    packages: Tuple[str, ...] = ()


BACKENDS = {
    "reference": Backend("reference"),
    "mlpmix": Backend("fused"),
    "aoti": Backend("fused", ("",), "the AOTInductor package (mlpmix.export.aoti)"),
    "onnxruntime": Backend("fused", ("", "int8"), "the ONNX file (mlpmix.export.onnx; +int8: "
                           "quantized by mlpmix.export.quantize_int8) in onnxruntime's "
                           "CPUExecutionProvider, intra_op_num_threads = threads",
                           ONNX_PACKAGES + ("onnxruntime",)),
    "openvino": Backend("fused", ("",), "the ONNX file in OpenVINO's CPU plugin, "
                        "INFERENCE_PRECISION_HINT f32, INFERENCE_NUM_THREADS = threads",
                        ONNX_PACKAGES + ("openvino",)),
}
# The case kind the runtimes run: a model's inference.
RUNTIME_KIND = "inference"


@dataclass(frozen=True)
class Implementation:
    backend: str  # a key of BACKENDS
    precision: Precision = PRECISIONS[""]
    compiled: bool = False

    @property
    def name(self) -> str:
        parts = [self.backend, self.precision.suffix, "compile" if self.compiled else ""]
        return "+".join(p for p in parts if p)

    @property
    def baseline(self) -> str:
        """The eager reference in the same precision (float32 where the reference does not
        run it): the implementation it is timed against."""
        same = self.precision.suffix in BACKENDS[REFERENCE].precisions
        return Implementation(REFERENCE, self.precision if same else PRECISIONS[""]).name

    @property
    def valid(self) -> bool:
        """Whether its backend runs its precision, and compiles where it is compiled."""
        backend = BACKENDS[self.backend]
        return self.precision.suffix in backend.precisions \
            and not (self.compiled and backend.runtime)

    def applies(self, kind: str) -> bool:
        """Whether it runs the cases of ``kind`` (bf16 weights, int8 and the runtimes:
        inference only)."""
        return (self.precision.kinds is None or kind in self.precision.kinds) \
            and (not BACKENDS[self.backend].runtime or kind == RUNTIME_KIND)


def parse(name: str) -> Implementation:
    """The implementation named ``name`` (``BACKEND[+PRECISION][+compile]``, in that order)."""
    backend, *rest = name.split("+")
    compiled = rest[-1:] == ["compile"]
    rest = rest[:-1] if compiled else rest
    precision = PRECISIONS.get(rest[0] if rest else "") if len(rest) <= 1 and rest != [""] else None
    if backend not in BACKENDS or precision is None \
            or not Implementation(backend, precision, compiled).valid:
        raise ValueError(f"not an implementation: {name!r} (BACKEND[+PRECISION][+compile], "
                         f"one of: {' '.join(KNOWN)})")
    return Implementation(backend, precision, compiled)


# Every implementation the suite knows, in report order: by precision, then the reference
# before mlpmix before the runtimes, eager before compiled.
KNOWN = tuple(i.name for i in (Implementation(b, p, c) for p in PRECISIONS.values()
                               for b in BACKENDS for c in (False, True)) if i.valid)
# The float32 implementations (the suite's columns before bfloat16; the CUDA default).
FLOAT32 = ("reference", "reference+compile", "mlpmix", "mlpmix+compile")
# The default of a CPU run, in report (and timing) order: float32, then bf16 autocast (the
# reference, its compile, mlpmix), then bf16 weights (inference only).
IMPLEMENTATIONS = FLOAT32 + ("reference+bf16", "reference+bf16+compile", "mlpmix+bf16",
                             "reference+bf16w", "mlpmix+bf16w")


def defaults(device: str) -> Tuple[str, ...]:
    """The implementations a run times by default: on CUDA the float32 ones (its models run
    under bf16 autocast already, see ``cases.Setting``)."""
    return IMPLEMENTATIONS if device == "cpu" else FLOAT32


def order(names: Sequence[str]) -> list:
    """``names`` in report order (the known ones first, in KNOWN's order)."""
    rank = {n: i for i, n in enumerate(KNOWN)}
    return sorted(dict.fromkeys(names), key=lambda n: rank.get(n, len(rank)))


def backend(impl: str) -> str:
    """The mlpmix.implementation an implementation runs its ops with (a runtime: exports
    its model with)."""
    return BACKENDS[parse(impl).backend].implementation


def runtime(impl: str) -> str:
    """What runs ``impl``'s model exported to a file (``benchmarks/runtimes.py``), in
    words; empty for eager PyTorch."""
    return BACKENDS[parse(impl).backend].runtime


def unavailable(impl: str, device: str = "cpu") -> Optional[str]:
    """Why ``impl`` cannot run here (a runtime off the CPU, or packages it needs are not
    installed), or None."""
    if runtime(impl) and device != "cpu":
        return "the runtimes are timed on CPU only"
    absent = [p for p in BACKENDS[parse(impl).backend].packages
              if importlib.util.find_spec(p) is None]
    if absent:
        return f"needs {', '.join(absent)}, not installed (pip install 'mlpmix[onnx]')"
    return None


def compiled(impl: str) -> bool:
    return parse(impl).compiled


def baseline(impl: str) -> str:
    return parse(impl).baseline


def applies(impl: str, kind: str) -> bool:
    return parse(impl).applies(kind)


def weights_dtype(impl: str) -> Optional[torch.dtype]:
    """The dtype ``impl`` casts the model and inputs to, or None (float32)."""
    return parse(impl).precision.weights


@contextlib.contextmanager
def running(impl: str, device: str = "cpu") -> Iterator[None]:
    """``impl``'s implementation switch and, for the ``+bf16`` ones, autocast on ``device``."""
    dtype = parse(impl).precision.autocast
    # No autocast context at all for the others: a disabled one would turn off the autocast
    # a caller runs them under (the CUDA models').
    autocast = torch.autocast(device, dtype=dtype) if dtype else contextlib.nullcontext()
    with mlpmix.implementation.use(backend(impl)), autocast:
        yield


def prepare(fn: Callable, impl: str, device: str = "cpu") -> Callable:
    """`fn` as `impl` runs it: compiled or not, always under its implementation switch and
    precision (the backward of what it returns runs outside autocast, as PyTorch advises)."""
    target = torch.compile(fn) if compiled(impl) else fn

    def run(*args):
        with running(impl, device):
            return target(*args)

    return run
