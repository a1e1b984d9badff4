"""Checkpoints in the authors' layout load into mlpmix models with identical outputs."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import mlpmix
from mlpmix.convert import CheckpointError, from_official
from official_models import official_model

SPEC_PARAMS = {"raftmlp_s": 9_868_768, "dynamixer_s": 26_265_960}


def randomized(model):
    """Every parameter random (LayerNorm ones too, so a wrong channel order shows)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.dim() == 1 and p.shape[0] > 0 else 0.0))
    return model


def converted_pair(arch, **kwargs):
    official = randomized(official_model(arch, **kwargs).double().eval())
    model = mlpmix.create_model(arch, **kwargs).double().eval()
    model.load_state_dict(from_official(arch, official.state_dict()), strict=True)
    return official, model


@pytest.mark.parametrize("arch", ["raftmlp_tiny", "dynamixer_tiny"])
def test_converted_outputs_match_to_float64_precision(arch):
    official, model = converted_pair(arch, num_classes=10, in_chans=1)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert_close(model(x), official(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch", ["raftmlp_s", "dynamixer_s"])
def test_published_model_converts_exactly(arch):
    official, model = converted_pair(arch)
    assert sum(p.numel() for p in official.parameters()) == SPEC_PARAMS[arch]
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        assert_close(model(x), official(x), rtol=1e-9, atol=1e-9)


def test_raft_layernorm_order_is_permuted():
    official = randomized(official_model("raftmlp_tiny", num_classes=10))
    state = official.state_dict()
    converted = from_official("raftmlp_tiny", state)
    theirs = state["levels.0.fn.2.1.norm.1.weight"]  # index j*r + i
    ours = converted["levels.0.blocks.0.token_mixing.norm_v.weight"]  # index i*o + j
    r, o = 2, theirs.numel() // 2
    assert all(ours[i * o + j] == theirs[j * r + i] for i in range(r) for j in range(o))


def test_unknown_and_missing_keys_are_listed():
    state = official_model("dynamixer_tiny", num_classes=10).state_dict()
    state["network.0.0.attn.extra.weight"] = torch.zeros(1)
    state["surprise"] = torch.zeros(1)
    del state["network.2.1.mlp.fc2.bias"]
    with pytest.raises(CheckpointError) as info:
        from_official("dynamixer_tiny", state)
    message = str(info.value)
    assert "surprise" in message
    assert "stages.0.layers.0.token_mixer.extra.weight" in message
    assert "stages.1.layers.1.mlp.fc2.bias" in message


def test_wrong_architecture_lists_shape_mismatches():
    state = official_model("raftmlp_tiny", num_classes=10).state_dict()
    with pytest.raises(CheckpointError, match="shape mismatches"):
        from_official("raftmlp_s", state)


@pytest.mark.parametrize("layout", ["official", "mlpmix", "wrapped"])
def test_create_model_loads_either_layout(layout, tmp_path):
    official, model = converted_pair("dynamixer_tiny", num_classes=10, in_chans=1)
    state = {"official": official.state_dict(), "mlpmix": model.state_dict(),
             "wrapped": {"state_dict": official.state_dict(), "epoch": 3}}[layout]
    torch.save(state, tmp_path / "ckpt.pth")
    loaded = mlpmix.create_model("dynamixer_tiny", num_classes=10, in_chans=1,
                                 checkpoint_path=tmp_path / "ckpt.pth").double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():  # create_model loads into float32 parameters
        assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
