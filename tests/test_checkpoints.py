"""Checkpoints as training scripts save them: wrappers, DDP prefixes, safetensors, and the
``mlpmix convert`` command (run as a user would, in a subprocess)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

import mlpmix
from mlpmix.convert import (WRAPPER_KEYS, CheckpointError, check_fits, load_checkpoint,
                            save_state_dict, unwrap_state_dict)
from official_models import official_model

SIZES = {"num_classes": 10, "in_chans": 1}


def mlpmix_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlpmix", *map(str, args)],
                          capture_output=True, text=True)


def tiny(arch: str = "dynamixer_tiny", seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mlpmix.create_model(arch, **SIZES, **kwargs).eval()


def official_state(arch: str) -> dict:
    """An authors'-layout float64 state dict with every parameter random, and its model."""
    torch.manual_seed(0)
    official = official_model(arch, **SIZES).double().eval()
    with torch.no_grad():
        for p in official.parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
    return official


@pytest.mark.parametrize("ddp", [False, True], ids=["plain", "ddp"])
@pytest.mark.parametrize("wrapper", [None, *WRAPPER_KEYS])
def test_unwrap_finds_the_state_dict(wrapper, ddp):
    state = {"a.weight": torch.ones(2), "b.bias": torch.zeros(3)}
    saved = {("module." + k if ddp else k): v for k, v in state.items()}
    if wrapper is not None:
        saved = {wrapper: saved, "epoch": 3, "optimizer": {"state": {}, "param_groups": []}}
    unwrapped = unwrap_state_dict(saved)
    assert list(unwrapped) == list(state)
    assert all(unwrapped[k] is state[k] for k in state)


def test_unwrap_prefers_ema_weights_and_keeps_partial_module_prefixes():
    ema, raw = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    assert unwrap_state_dict({"state_dict": raw, "state_dict_ema": ema})["w"] is ema["w"]
    mixed = {"module.w": torch.ones(1), "v": torch.ones(1)}  # not every key: not DDP's
    assert list(unwrap_state_dict(mixed)) == ["module.w", "v"]


@pytest.mark.parametrize("obj, message", [
    ({"epoch": 3, "weights": [1.0]}, "keys epoch, weights"),
    ([torch.ones(1)], "got list"),
])
def test_unwrap_rejects_objects_without_a_state_dict(obj, message):
    with pytest.raises(CheckpointError, match=message):
        unwrap_state_dict(obj)


def test_timm_checkpoint_with_args_loads_weights_only(tmp_path):
    """timm's CheckpointSaver (the authors' DynaMixer training) stores argparse args."""
    model = tiny()
    torch.save({"epoch": 9, "arch": "dynamixer_tiny", "args": argparse.Namespace(lr=1e-3, model="x"),
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
                "version": 2}, tmp_path / "model_best.pth.tar")
    state = load_checkpoint("dynamixer_tiny", tmp_path / "model_best.pth.tar")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_unsafe_pickle_is_a_checkpoint_error(tmp_path):
    torch.save({"model": tiny().state_dict(), "fn": Path}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint("dynamixer_tiny", tmp_path / "unsafe.pth")


@pytest.mark.parametrize("arch", ["raftmlp_tiny", "dynamixer_tiny"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".bin"])
def test_save_and_create_model_round_trip(arch, suffix, tmp_path):
    model = tiny(arch)
    path = save_state_dict(model.state_dict(), tmp_path / f"weights{suffix}")
    restored = mlpmix.create_model(arch, **SIZES, checkpoint_path=path).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))
    assert (load_file(path) if suffix == ".safetensors" else torch.load(path)).keys() \
        == model.state_dict().keys()


def test_safetensors_clones_shared_and_strided_tensors(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    state = {"a": base, "tied": base, "row": base[1], "t": base.t()}
    save_state_dict(state, tmp_path / "s.safetensors")
    loaded = load_file(tmp_path / "s.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_save_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"'\.ckpt'"):
        save_state_dict({"w": torch.ones(1)}, tmp_path / "w.ckpt")


def test_checkpoint_at_another_image_size_loads(tmp_path):
    model = tiny("raftmlp_tiny", img_size=16)
    save_state_dict(model.state_dict(), tmp_path / "w16.safetensors")
    restored = mlpmix.create_model("raftmlp_tiny", **SIZES, img_size=16,
                                   checkpoint_path=tmp_path / "w16.safetensors")
    assert torch.equal(restored.state_dict()["levels.0.blocks.0.token_mixing.mlp_v.fc1.weight"],
                       model.state_dict()["levels.0.blocks.0.token_mixing.mlp_v.fc1.weight"])


def test_mlpmix_layout_of_another_architecture_names_the_keys(tmp_path):
    save_state_dict(tiny("dynamixer_tiny").state_dict(), tmp_path / "dyna.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint("raftmlp_tiny", tmp_path / "dyna.safetensors")
    unexpected, missing = str(info.value).split("\n")[1:3]
    assert unexpected.startswith("  keys that do not exist in this architecture: stages.0.")
    assert "stages.0.layers.0.token_mixer.mix_h.generate.weight" in unexpected
    assert missing.startswith("  missing keys: levels.0.") and "levels.0.embed.proj.weight" in missing


def test_check_fits_names_mis_shaped_keys():
    state = tiny("raftmlp_tiny").state_dict()
    with pytest.raises(CheckpointError, match=r"head.weight: checkpoint \(10, 64\), model \(7, 64\)"):
        check_fits("raftmlp_tiny", state, mlpmix.create_model("raftmlp_tiny", num_classes=7,
                                                              in_chans=1).state_dict())


@pytest.mark.parametrize("arch", ["raftmlp_tiny", "dynamixer_tiny"])
def test_convert_command_on_an_authors_ddp_ema_checkpoint(arch, tmp_path):
    official = official_state(arch)
    torch.save({"epoch": 299, "model_ema": {"module." + k: v for k, v in official.state_dict().items()}},
               tmp_path / "checkpoint.pth")
    result = mlpmix_cli("convert", tmp_path / "checkpoint.pth", "--model", arch)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "checkpoint.mlpmix.safetensors"
    state = load_file(out)
    assert result.stdout.startswith(f"wrote {out}: {arch}, {len(state)} tensors, 10 classes")

    model = mlpmix.create_model(arch, **SIZES).double().eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert_close(model(x), official(x), rtol=1e-10, atol=1e-10)


def test_convert_command_writes_a_torch_file_for_out_pt(tmp_path):
    model = tiny()
    save_state_dict(model.state_dict(), tmp_path / "w.safetensors")
    result = mlpmix_cli("convert", tmp_path / "w.safetensors", "--model", "dynamixer_tiny",
                        "--out", tmp_path / "w.pt")
    assert result.returncode == 0, result.stderr
    assert torch.equal(torch.load(tmp_path / "w.pt", weights_only=True)["head.weight"],
                       model.state_dict()["head.weight"])


def test_convert_command_rejects_the_wrong_architecture(tmp_path):
    torch.save({"state_dict": official_state("raftmlp_tiny").state_dict()}, tmp_path / "raft.pth")
    result = mlpmix_cli("convert", tmp_path / "raft.pth", "--model", "dynamixer_tiny")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("mlpmix convert: checkpoint does not fit dynamixer_tiny")
    assert "levels.0.fn.0.fc.weight" in result.stderr  # unknown (the authors' raft key)
    assert "missing keys: head.bias" in result.stderr
    assert not (tmp_path / "raft.mlpmix.safetensors").exists()


def test_export_command_takes_safetensors_and_reports_mismatches(tmp_path):
    model = tiny()
    save_state_dict(model.state_dict(), tmp_path / "w.safetensors")
    result = mlpmix_cli("export", tmp_path / "w.safetensors", "--model", "dynamixer_tiny",
                        "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert result.returncode == 0, result.stderr  # classes and channels from the checkpoint
    scripted, metadata = mlpmix.export.load(tmp_path / "m.pt")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
    assert metadata["num_classes"] == 10 and metadata["input_shape"] == [-1, 1, 8, 8]

    result = mlpmix_cli("export", tmp_path / "w.safetensors", "--model", "dynamixer_tiny",
                        "--num-classes", 7, "--format", "torchscript", "--out", tmp_path / "x.pt")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "head.weight: checkpoint (10, 64), model (7, 64)" in result.stderr
