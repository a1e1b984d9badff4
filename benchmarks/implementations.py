"""The implementations compared in every case, in report order. ``reference`` (the eager
reference, plain PyTorch as the authors wrote the models) is the baseline of the speedups."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch

import mlpmix

REFERENCE = "reference"
IMPLEMENTATIONS = ("reference", "reference+compile", "mlpmix", "mlpmix+compile")


def backend(impl: str) -> str:
    """The mlpmix.implementation an implementation runs its ops with."""
    return "reference" if impl.startswith("reference") else "fused"


def compiled(impl: str) -> bool:
    return impl.endswith("+compile")


@contextlib.contextmanager
def running(impl: str) -> Iterator[None]:
    with mlpmix.implementation.use(backend(impl)):
        yield


def prepare(fn: Callable, impl: str) -> Callable:
    """`fn` as `impl` runs it: compiled or not, always under its implementation switch."""
    target = torch.compile(fn) if compiled(impl) else fn

    def run(*args):
        with running(impl):
            return target(*args)

    return run
