"""mlpmix: RaftMLP and DynaMixer on fused C++ token-mixing ops.

Importing mlpmix imports torch, checks that it is the torch release the extension was
built against, then loads libmlpmix_ops, which registers ``torch.ops.mlpmix.*``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import _C

__version__: str = _C.version

_PACKAGE_DIR = Path(__file__).resolve().parent
#: Directory to add to CMAKE_PREFIX_PATH so that ``find_package(mlpmix)`` works.
cmake_prefix_path: str = str(_PACKAGE_DIR / "share" / "cmake")
#: The operator library (load it in any process that runs mlpmix models). MLPMIX_OPS_LIBRARY
#: points at another build of it, e.g. a sanitizer build.
library_path: str = os.environ.get("MLPMIX_OPS_LIBRARY", str(_PACKAGE_DIR / "lib" / "libmlpmix_ops.so"))
#: The C++ runner ``mlpmix-run`` (runs exported models on tensor files; see docs/deployment.md).
runner_path: str = str(_PACKAGE_DIR / "bin" / "mlpmix-run")


def _load_library() -> None:
    if torch.__version__ != _C.torch_version:
        raise ImportError(
            f"mlpmix was built against torch {_C.torch_version} but torch {torch.__version__} "
            "is installed; the C++ library only works with the torch it was built against. "
            f"Install torch=={_C.torch_version} or rebuild mlpmix with this torch."
        )
    torch.ops.load_library(library_path)


_load_library()

from . import implementation, ops, reference, flops, nn, models, convert, export  # noqa: E402
from .models import create_model, list_models  # noqa: E402

__all__ = ["implementation", "ops", "flops", "convert", "export", "reference", "nn", "models", "create_model", "list_models",
           "cmake_prefix_path", "library_path", "runner_path", "build_info"]


def build_info() -> dict[str, object]:
    """How this mlpmix was built: versions, backends, the kernels' intra-op parallelism
    (``"openmp"``, torch's threads, when torch uses OpenMP) and compiler."""
    return {
        "mlpmix": _C.version,
        "torch_built_against": _C.torch_version,
        "torch_running": torch.__version__,
        "backends": list(_C.backends),
        "parallel": _C.parallel,
        "compiler": _C.compiler,
        "build_type": _C.build_type,
        "library": library_path,
        "cmake_prefix_path": cmake_prefix_path,
        "runner": runner_path,
    }
