"""Which implementation ``mlpmix.ops`` runs: the fused C++ kernels (``"fused"``, the
default) or the pure-PyTorch :mod:`mlpmix.reference` (``"reference"``).

Chosen at import by the environment variable ``MLPMIX_IMPL`` and changed in a scope by
:func:`use`. TorchScript always runs the fused ops (scripted code has no Python state).
"""


import contextlib
import os
from typing import Iterator

import torch

IMPLEMENTATIONS = ("fused", "reference")


def _validated(name: str, source: str) -> str:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"{source} must be one of {IMPLEMENTATIONS}, got {name!r}")
    return name


_current = _validated(os.environ.get("MLPMIX_IMPL", "fused"), "MLPMIX_IMPL")


def current() -> str:
    """The implementation the ops run now."""
    return _current


@torch.jit.unused  # TorchScript has no Python state: scripted code runs the fused ops
def use_reference() -> bool:
    return _current == "reference"


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Runs the ops of the enclosed code with implementation ``name``::

        with mlpmix.implementation.use("reference"):
            logits = model(images)   # plain PyTorch, as the authors wrote it
    """
    global _current
    previous, _current = _current, _validated(name, "implementation")
    try:
        yield
    finally:
        _current = previous
