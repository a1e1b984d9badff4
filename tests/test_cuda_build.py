"""The CUDA build compiles and registers every kernel (CI has nvcc but no GPU).

A fresh venv gets the CUDA 13 torch wheel and builds mlpmix with MLPMIX_CUDA=1 for one
architecture (sm_90, to keep CI short); there, without a GPU, every op and backward op must
have a CUDA and every forward op an AutocastCUDA kernel, build_info must list cuda, the
installed library must resolve all its libraries (RUNPATH to torch and nvidia/cu13), and the
CPU ops must still equal the reference. The GPU itself is tested by tests/test_cuda.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import OP_SMOKE_TEST, REPO, fresh_venv

CUDA_HOME = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda-13.0"))
NVCC = CUDA_HOME / "bin" / "nvcc"
CUDA_TORCH = "torch==2.14.1"  # the CUDA 13.0 build

KERNELS = """
import torch, mlpmix
# CPU and CUDA may be served by an op's CompositeExplicitAutograd kernel (an alias key): ask
# for the kernel the dispatcher computed for them; Meta and AutocastCUDA are registered as is.
def has_kernel(op, key):
    if key in ("CPU", "CUDA"):
        return torch._C._dispatch_has_computed_kernel_for_dispatch_key(op, key)
    return torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
missing = [
    (op + suffix, key)
    for op in mlpmix.ops.__all__
    for suffix, keys in (("", ("CUDA", "AutocastCUDA", "CPU", "Meta")), ("_backward", ("CUDA", "CPU", "Meta")))
    for key in keys
    if not has_kernel("mlpmix::" + op + suffix, key)
]
assert not missing, missing
print(",".join(mlpmix.build_info()["backends"]), mlpmix.library_path)
"""

@pytest.mark.slow
@pytest.mark.skipif(not NVCC.exists(), reason=f"no nvcc in {CUDA_HOME} (set CUDA_HOME)")
def test_cuda_build_registers_every_kernel(tmp_path):
    python = fresh_venv(tmp_path / "venv", CUDA_TORCH, "scikit-build-core", "pybind11", "cmake",
                        "ninja")
    env = dict(os.environ, MLPMIX_CUDA="1", TORCH_CUDA_ARCH_LIST="9.0",
               CUDA_HOME=str(CUDA_HOME), CUDACXX=str(NVCC),
               PATH=os.pathsep.join([str(CUDA_HOME / "bin"), str(python.parent),
                                     os.environ["PATH"]]))
    # A unity build (one translation unit per batch of C++ sources) compiles the host code
    # in less than half the time, and -O1 host code (nvcc's -O is the host compiler's; the
    # device code is optimised all the same) in a third less again. Not -O0: the AVX clones'
    # vector helpers must be inlined (at -O0 a lambda taking a vector is called across ABIs).
    build = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-build-isolation",
         "-C", f"build-dir={tmp_path / 'build'}", "-C", "cmake.define.CMAKE_UNITY_BUILD=ON",
         "-C", "cmake.define.CMAKE_CXX_FLAGS_RELEASE=-O1",
         "-C", "cmake.define.CMAKE_CUDA_FLAGS_RELEASE=-O1",
         # the runner holds no CUDA code of ours (tests/test_cli.py runs it)
         "-C", "cmake.define.MLPMIX_BUILD_RUNNER=OFF", str(REPO)],
        env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]

    kernels = subprocess.run([str(python), "-c", KERNELS], cwd=tmp_path, capture_output=True,
                             text=True)
    assert kernels.returncode == 0, kernels.stderr
    backends, library = kernels.stdout.split()
    assert backends == "cpu,cuda"

    if shutil.which("ldd"):
        linked = subprocess.run(["ldd", library], capture_output=True, text=True).stdout
        assert "not found" not in linked, linked
        assert "nvidia/cu13/lib/libcudart.so" in linked, linked

    smoke = subprocess.run([str(python), "-c", OP_SMOKE_TEST], cwd=tmp_path,
                           capture_output=True, text=True)
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.split()[0] == "ok"


@pytest.mark.skipif(torch.version.cuda is not None, reason="needs a CPU build of torch")
def test_cuda_required_with_a_cpu_torch_fails_clearly(tmp_path):
    result = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(tmp_path), f"-DPython_EXECUTABLE={sys.executable}"],
        env=dict(os.environ, MLPMIX_CUDA="1"), capture_output=True, text=True)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert f"MLPMIX_CUDA=1 asks for the CUDA kernels, but torch {torch.__version__} is a CPU build" \
        in message, result.stderr
