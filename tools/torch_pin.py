"""scikit-build-core metadata provider: pin the wheel to the torch that builds it.

A LibTorch extension only works with the exact torch release it was compiled against
(there is no stable C++ ABI), so the wheel's `dependencies` start with
`torch==<version of the building interpreter's torch distribution>`, followed by the `requires` listed
in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def dynamic_metadata(field: str, settings: Mapping[str, Any]) -> list[str]:
    if field != "dependencies":
        raise RuntimeError(f"torch_pin only provides 'dependencies', not {field!r}")
    # The installed distribution's version, which is what pip resolves against: the CUDA
    # wheels report torch.__version__ "2.14.1+cu130" but are installed as "2.14.1".
    from importlib.metadata import version

    return [f"torch=={version('torch')}", *settings.get("requires", [])]
