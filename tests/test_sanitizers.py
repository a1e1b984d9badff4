"""The op tests again, against libmlpmix_ops built with AddressSanitizer and
UndefinedBehaviorSanitizer (CMake option MLPMIX_SANITIZE): zero reports.

Python is not instrumented, so the ASan runtime (and libstdc++, whose __cxa_throw ASan
intercepts) are preloaded; leak detection is off (CPython keeps its allocations to exit).
Subset: the op, bad-input and property tests; torch.compile/export tests are left out
because Inductor runs the system compiler, which would inherit the preload.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

SUBSET = ["tests/test_ops.py", "tests/test_ops_dynamixer.py", "tests/test_ops_raft_token_mixing.py",
          "tests/test_ops_cross_scale_embed.py", "tests/test_ops_channel_mlp.py",
          "tests/test_ops_linear.py", "tests/test_ops_reweight_branches.py",
          "tests/test_bad_inputs.py",
          "tests/test_properties.py"]


def gcc_file(name: str) -> str:
    return subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.slow
def test_op_suite_under_asan_and_ubsan(tmp_path):
    build = tmp_path / "asan"
    # A unity build (one translation unit per batch of sources) compiles in less than half
    # the time; the tests load only the ops library.
    configure = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(build), "-G", "Ninja", "-DMLPMIX_BUILD_PYTHON=OFF",
         "-DMLPMIX_SANITIZE=ON", "-DCMAKE_UNITY_BUILD=ON", f"-DPython_EXECUTABLE={sys.executable}"],
        capture_output=True, text=True)
    assert configure.returncode == 0, configure.stderr
    built = subprocess.run(["cmake", "--build", str(build), "--target", "mlpmix_ops"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:]

    env = dict(os.environ,
               LD_PRELOAD=f"{gcc_file('libasan.so')} {gcc_file('libstdc++.so.6')}",
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
               MLPMIX_OPS_LIBRARY=str(build / "libmlpmix_ops.so"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider", "-k",
         # gradcheck's finite differences and opcheck's tracing call the kernels the
         # reference tests already run, many times more: minutes under ASan for no new path
         "not compile and not export and not script and not gradcheck and not opcheck",
         *SUBSET],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
    output = result.stdout + result.stderr
    assert "AddressSanitizer" not in output and "runtime error:" not in output, output[-5000:]
    assert result.returncode == 0, output[-5000:]
    assert " passed" in result.stdout
