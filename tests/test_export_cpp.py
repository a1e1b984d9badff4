"""Models scripted in Python run in the C++ example app with the same output."""

from __future__ import annotations

import subprocess

import torch

from conftest import run_example
from mlpmix.nn import DynaMixerBlock


def test_scripted_dynamixer_block_in_cpp(example_app, tmp_path):
    torch.manual_seed(0)
    block = DynaMixerBlock(16, (4, 6), num_segments=4).eval()
    torch.jit.script(block).save(str(tmp_path / "block.pt"))
    x = torch.randn(2, 4, 6, 16)
    with torch.inference_mode():
        expected = block(x)
    assert torch.equal(run_example(example_app, tmp_path / "block.pt", x, tmp_path), expected)


def test_example_reports_missing_model(example_app, tmp_path):
    torch.save(torch.zeros(1), tmp_path / "in.pt")
    result = subprocess.run([str(example_app), str(tmp_path / "nope.pt"), str(tmp_path / "in.pt")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "error" in result.stderr
