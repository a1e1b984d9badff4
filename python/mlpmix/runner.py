"""The C++ runner ``mlpmix-run`` (``cpp/runner/main.cpp``) from Python: the console-script
shim that puts it on PATH, and :func:`run_file` to run it on a tensor."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Union

import torch
from torch import Tensor

from . import runner_path


def installed_runner() -> str:
    """The runner's path; a RuntimeError if this build of mlpmix has none."""
    if not os.path.isfile(runner_path):
        raise RuntimeError(f"mlpmix-run is not installed ({runner_path} is missing): this mlpmix "
                           "was built with -DMLPMIX_BUILD_RUNNER=OFF")
    return runner_path


def main() -> None:
    """``mlpmix-run ARGS``: replaces this process with the installed binary."""
    try:
        runner = installed_runner()
    except RuntimeError as error:
        sys.exit(f"mlpmix-run: {error}")
    os.execv(runner, [runner, *sys.argv[1:]])


def run_file(model_path: Union[str, Path], inputs: Tensor, *options: str) -> Tensor:
    """Runs the C++ runner with the model file on ``inputs`` and returns its logits; raises
    ``RuntimeError`` with the runner's message when it fails."""
    with tempfile.TemporaryDirectory(prefix="mlpmix-run-") as tmp:
        input_path, output_path = Path(tmp) / "input.pt", Path(tmp) / "logits.pt"
        torch.save(inputs, input_path)
        result = subprocess.run(
            [installed_runner(), str(model_path), str(input_path), "--output", str(output_path),
             *options],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"mlpmix-run failed ({result.returncode}): {result.stderr.strip()}")
        return torch.load(output_path)
