"""Export trained models for C++: TorchScript files and AOTInductor packages.

Both formats call the mlpmix operators by name; the process that loads them must have the
ops library loaded (Python: ``import mlpmix``; C++: link ``mlpmix::mlpmix``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch import Tensor, nn

__all__ = ["torchscript", "aoti"]


def torchscript(model: nn.Module, path: Union[str, Path]) -> Path:
    """Scripts ``model`` (in eval mode) and saves it to ``path`` (a ``.pt`` file)."""
    model.eval()
    torch.jit.script(model).save(str(path))
    return Path(path)


def aoti(model: nn.Module, example_input: Tensor, path: Union[str, Path],
         dynamic_batch: bool = True) -> Path:
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
    with torch.no_grad():
        program = torch.export.export(model, (example_input,), dynamic_shapes=dynamic_shapes)
        package = torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return Path(package)
