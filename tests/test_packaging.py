"""The wheel: pinned to the building torch, installable in a fresh venv, op runs there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import version

import pytest
import torch

import mlpmix
from conftest import OP_SMOKE_TEST, REPO, fresh_venv


def test_import_refuses_a_different_torch():
    code = "import torch; torch.__version__ = '0.0.1'; import mlpmix"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "0.0.1" in result.stderr and mlpmix.build_info()["torch_built_against"] in result.stderr


def test_build_info():
    info = mlpmix.build_info()
    assert info["torch_built_against"] == torch.__version__
    assert info["backends"][0] == "cpu"
    assert info["compiler"]


@pytest.mark.slow
def test_wheel_installs_into_fresh_venv_and_runs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
                    "-q", "-w", str(dist), str(REPO)], check=True)
    (wheel,) = dist.glob("mlpmix-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Requires-Dist: torch=={version('torch')}" in metadata
    for part in ("mlpmix/lib/libmlpmix_ops.so", "mlpmix/include/mlpmix/mlpmix.h",
                 "mlpmix/share/cmake/mlpmix/mlpmixConfig.cmake"):
        assert part in names

    python = fresh_venv(tmp_path / "venv", str(wheel))
    result = subprocess.run([str(python), "-c", OP_SMOKE_TEST], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", torch.__version__]


def test_kernels_run_on_torchs_threads():
    # at::parallel_for runs serially in a library compiled without OpenMP (it is a header
    # template keyed on _OPENMP); with a torch built on OpenMP the kernels must use it too,
    # through the one OpenMP runtime torch loaded.
    expected = "openmp" if "OpenMP" in torch.__config__.parallel_info() else "serial"
    assert mlpmix.build_info()["parallel"] == expected
    with open("/proc/self/maps") as maps:
        runtimes = {line.split()[-1] for line in maps if "libgomp" in line}
    assert len(runtimes) <= 1, runtimes
