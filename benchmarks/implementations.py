"""The implementations compared in every case, as data.

An implementation's name is ``BACKEND[+PRECISION][+compile]``:

- ``BACKEND``: ``reference`` (the eager reference, plain PyTorch as the authors wrote the
  models: ``mlpmix.implementation.use("reference")``) or ``mlpmix`` (the fused ops);
- ``PRECISION`` (a key of ``PRECISIONS``): none for float32; ``bf16`` for CPU bfloat16
  autocast (``torch.autocast(device, dtype=torch.bfloat16)`` around the forward, float32
  parameters and inputs); ``bf16w`` for bfloat16 weights (``model.to(torch.bfloat16)`` and
  bfloat16 inputs; inference only);
- ``+compile``: ``torch.compile`` of it.

Each implementation's speedups are taken against its **baseline**, the eager reference in
the same precision (``reference`` for the float32 ones, ``reference+bf16`` for the ``+bf16``
ones, ``reference+bf16w`` for the ``+bf16w`` ones), and, for every one, against the float32
eager reference ``reference``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch

import mlpmix

REFERENCE = "reference"
BACKENDS = {"reference": "reference", "mlpmix": "fused"}  # name -> mlpmix.implementation


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


PRECISIONS = {
    "": Precision("", "float32"),
    "bf16": Precision("bf16", "bfloat16 autocast", autocast=torch.bfloat16),
    "bf16w": Precision("bf16w", "bfloat16 weights and inputs", weights=torch.bfloat16,
                       kinds=("inference",)),
}


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
        """The eager reference in the same precision: the implementation it is timed against."""
        return Implementation(REFERENCE, self.precision).name

    def applies(self, kind: str) -> bool:
        """Whether it runs the cases of ``kind`` (bf16 weights: inference only)."""
        return self.precision.kinds is None or kind in self.precision.kinds


def parse(name: str) -> Implementation:
    """The implementation named ``name`` (``BACKEND[+PRECISION][+compile]``, in that order)."""
    backend, *rest = name.split("+")
    compiled = rest[-1:] == ["compile"]
    rest = rest[:-1] if compiled else rest
    if backend not in BACKENDS or len(rest) > 1 or (rest and rest[0] not in PRECISIONS) \
            or rest == [""]:
        raise ValueError(f"not an implementation: {name!r} (BACKEND[+PRECISION][+compile], "
                         f"BACKEND in {sorted(BACKENDS)}, PRECISION in "
                         f"{sorted(p for p in PRECISIONS if p)})")
    return Implementation(backend, PRECISIONS[rest[0] if rest else ""], compiled)


# Every implementation the suite knows, in report order: by precision, then the reference
# before mlpmix, eager before compiled.
KNOWN = tuple(Implementation(b, p, c).name for p in PRECISIONS.values() for b in BACKENDS
              for c in (False, True))
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
    """The mlpmix.implementation an implementation runs its ops with."""
    return BACKENDS[parse(impl).backend]


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
