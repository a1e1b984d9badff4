"""Shared fixtures: the C++ example application built against the installed mlpmix."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# torch.compile's on-disk cache is keyed on the graph, which calls the public ops, not on the
# ops library beneath them: a cache left by another build of mlpmix could call its internal
# ops. Each test session compiles into a cache of its own, removed when the session ends (the
# xdist workers inherit the controller's).
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlpmix-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

# pytest-xdist runs one worker per core, and torch in each runs one OpenMP thread per core.
# OpenMP threads spin at barriers, waiting for threads that the other workers keep off the
# cores: test_models.py and test_reduced_precision.py took 115-160 s on two workers. Waiting
# threads sleep instead in the workers and the processes they start: 86 s (one thread per
# worker: 71 s, but the kernels' multi-threaded paths would go untested).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import mlpmix

REPO = Path(__file__).resolve().parent.parent

# Tests run as `.venv/bin/python -m pytest` without activating the venv: put its bin first
# on PATH so that subprocesses find its cmake (>= 3.26), ninja and console scripts.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])


# Test files that share the session's built C++ apps and exported models (fixtures below).
CPP_APP_FILES = {"test_concurrency.py", "test_export_cpp.py"}


# The longest groups (ONNX exports, builds in fresh venvs, C++ apps, the demo, compiled
# models, the op table), longest first: pytest-xdist hands groups out in collection order,
# and one started last would finish alone.
LONGEST_FIRST = ["test_onnx.py", "test_sanitizers.py", "test_cuda_build.py",
                 "test_concurrency.py", "test_export_cpp.py", "test_cli.py", "test_packaging.py",
                 "test_reduced_precision.py", "test_models.py", "test_ops.py",
                 "test_cuda_emulated.py"]


def work_unit(nodeid: str) -> str:
    """The pytest-xdist work unit of a test: its file, or "cpp_apps" for the files sharing
    the C++ apps."""
    path = nodeid.split("::")[0]
    return "cpp_apps" if path.rsplit("/", 1)[-1] in CPP_APP_FILES else path


def pytest_xdist_make_scheduler(config, log):
    """Each group runs on one worker, so its module and session fixtures are made once.
    (``--dist loadgroup``'s xdist_group marks do not group under pytest 9.2, whose node ids
    ignore the suffix pytest-xdist 3.8 groups by: every test was scheduled alone.) Groups go
    out in collection order (``--no-loadscope-reorder``)."""
    from xdist.scheduler import LoadScopeScheduling

    class FileGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FileGroupScheduling(config, log)


def pytest_collection_modifyitems(items):
    """The longest files are collected first."""
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name)
               if item.path.name in LONGEST_FIRST else len(LONGEST_FIRST))


# Run in a fresh venv with mlpmix installed: every op equals the reference on CPU.
OP_SMOKE_TEST = """
import torch, mlpmix
from mlpmix import ops, reference
def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)
x = randn(2, 4, 6, 8)
calls = [
    ("dynamixer", (x, randn(8, 8), None, randn(16, 8), None, 4, 1)),
    ("raft_token_mixing", (x, randn(8), randn(8), randn(16, 8), randn(16), randn(8, 16), randn(8), 2, 1)),
    ("channel_mlp", (x, randn(8), randn(8), randn(16, 8), randn(16), randn(8, 16), randn(8))),
    ("cross_scale_embed", (x, randn(5, 4 * (4 + 16)), randn(5), [2, 4])),
    ("linear", (x, randn(5, 8), randn(5))),
    ("reweight_branches", (x, x.flip(1), 2 * x, randn(2, 8), randn(2), randn(24, 2), randn(24))),
]
for name, args in calls:
    assert torch.allclose(getattr(ops, name)(*args), getattr(reference, name)(*args)), name
print("ok", mlpmix.build_info()["torch_built_against"])
"""


def fresh_venv(directory: Path, *requirements: str) -> Path:
    """A new venv in `directory` with `requirements` pip-installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    if requirements:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-compile", *requirements],
                       check=True)
    return python


def build_against_installed_mlpmix(source: Path, build: Path) -> Path:
    """Configures and builds the CMake project `source` with find_package(mlpmix) against
    the installed package; fails the test with the compiler's output if it does not build."""
    try:
        cmake_configure_and_build(source, build)
    except subprocess.CalledProcessError as e:
        pytest.fail(f"building {source} failed:\n{e.stdout}\n{e.stderr}")
    return build


def cmake_configure_and_build(source: Path, build: Path) -> None:
    prefix = ";".join([torch.utils.cmake_prefix_path, mlpmix.cmake_prefix_path])
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(source), "-B", str(build), *generator,
         f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"],
        check=True, capture_output=True, text=True,
    )
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def example_app(tmp_path_factory) -> Path:
    """examples/cpp built with find_package(mlpmix) against the installed package."""
    build = tmp_path_factory.mktemp("example_build")
    return build_against_installed_mlpmix(REPO / "examples" / "cpp", build) / "mlpmix_example"


def run_example(app: Path, model_path: Path, x: torch.Tensor, tmp_path: Path) -> torch.Tensor:
    """Runs the C++ example on `x` and returns the output tensor it saved."""
    torch.save(x, tmp_path / "input.pt")
    result = subprocess.run(
        [str(app), str(model_path), str(tmp_path / "input.pt"), str(tmp_path / "output.pt")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    return torch.load(tmp_path / "output.pt")


class TinyExports:
    """The two tiny models (10 classes, 1x8x8 input) and their exported files, made once
    per test session: TorchScript on first use, AOTInductor (slow to compile) on first use."""

    NAMES = ("raftmlp_tiny", "dynamixer_tiny")

    def __init__(self, directory: Path):
        self.directory = directory
        self.models = {}
        self._files = {}

    def model(self, name: str) -> torch.nn.Module:
        if name not in self.models:
            torch.manual_seed(0)
            # normal tensors even when first asked for inside torch.inference_mode(): the
            # AOTInductor export of the same model sets requires_grad on its parameters
            with torch.inference_mode(False):
                self.models[name] = mlpmix.create_model(name, num_classes=10, in_chans=1).eval()
        return self.models[name]

    def torchscript(self, name: str) -> Path:
        return self._export(name, "pt", lambda m, p: mlpmix.export.torchscript(m, p))

    def aoti(self, name: str) -> Path:
        return self._export(name, "pt2",
                            lambda m, p: mlpmix.export.aoti(m, torch.randn(2, 1, 8, 8), p))

    def _export(self, name, suffix, export):
        key = (name, suffix)
        if key not in self._files:
            path = self.directory / f"{name}.{suffix}"
            export(self.model(name), path)
            self._files[key] = path
        return self._files[key]


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory) -> TinyExports:
    return TinyExports(tmp_path_factory.mktemp("tiny_exports"))


@pytest.fixture(scope="session")
def cpp_tests(tmp_path_factory) -> Path:
    """tests/cpp built against the installed package; returns its build directory."""
    return build_against_installed_mlpmix(REPO / "tests" / "cpp",
                                          tmp_path_factory.mktemp("cpp_tests_build"))
