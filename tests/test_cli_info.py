"""``mlpmix info NAME``: a model's parameter count, MACs, input size and pretrained_cfg, as
text or JSON (run in-process through the command's own entry point; the console script
itself is run by tests/test_cli.py)."""

from __future__ import annotations

import json

import pytest
import torch

import mlpmix
from mlpmix import cli
from mlpmix.flops import count_macs


def run_info(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(["info", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_info_name_json_gives_the_models_facts(capsys):
    status, out, _ = run_info(capsys, "dynamixer_s", "--json")
    assert status == 0
    facts = json.loads(out)
    with torch.device("meta"):
        model = mlpmix.create_model("dynamixer_s")
    assert facts["model"] == "dynamixer_s"
    assert facts["parameters"] == 26_265_960  # spec table 2.3
    assert facts["macs"] == count_macs(model)
    assert facts["macs"] == pytest.approx(7.30e9, rel=0.03)
    assert facts["input_size"] == [3, 224, 224]
    assert facts["pretrained_cfg"]["crop_pct"] == 0.9
    assert facts["pretrained_cfg"]["interpolation"] == "bicubic"


def test_info_name_prints_the_same_facts_as_text(capsys):
    status, out, _ = run_info(capsys, "raftmlp_s")
    assert status == 0
    assert "parameters:        9,868,768" in out  # spec table 1.3
    assert "MACs:              2,087,030,784" in out
    assert "input size:        3x224x224" in out
    assert "crop_pct:          0.875" in out


def test_info_unknown_name_lists_the_known_ones(capsys):
    status, out, err = run_info(capsys, "raftmlp_xl")
    assert status == 1 and not out
    assert "unknown model 'raftmlp_xl'" in err
    assert all(name in err for name in mlpmix.list_models())


def test_info_without_name_json_gives_the_installation(capsys):
    status, out, _ = run_info(capsys, "--json")
    assert status == 0
    assert json.loads(out)["mlpmix"] == mlpmix.__version__
