"""Checkpoints in the authors' layout load into mlpmix models with identical outputs."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import mlpmix
from mlpmix.convert import CheckpointError, from_official
from official_models import official_model

SPEC_PARAMS = {
    "raftmlp_s": 9_868_768, "raftmlp_m": 21_413_632, "raftmlp_l": 36_184_672,
    "dynamixer_s": 26_265_960, "dynamixer_m": 57_128_264, "dynamixer_l": 97_818_088,
}


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


@pytest.mark.parametrize("arch", SPEC_PARAMS)
def test_authors_tree_has_the_published_parameter_count(arch):
    with torch.device("meta"):
        official = official_model(arch)
    assert sum(p.numel() for p in official.parameters()) == SPEC_PARAMS[arch]


@pytest.mark.parametrize("arch", SPEC_PARAMS)
def test_published_model_converts_exactly(arch):
    official, model = converted_pair(arch)
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        assert_close(model(x), official(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch, key, converted_key", [
    # S: network = [stage(4), down, stage(3), stage(8), stage(3)]
    ("dynamixer_s", "network.3.5.norm1.weight", "stages.1.layers.8.norm1.weight"),
    ("dynamixer_s", "network.4.2.mlp.fc1.bias", "stages.1.layers.13.mlp.fc1.bias"),
    ("dynamixer_s", "network.1.proj.weight", "stages.1.downsample.weight"),
    # M: network = [stage(4), stage(3), down, stage(14), stage(3)]
    ("dynamixer_m", "network.1.2.attn.mix_h.generate.weight",
     "stages.0.layers.6.token_mixer.mix_h.generate.weight"),
    ("dynamixer_m", "network.2.proj.bias", "stages.1.downsample.bias"),
    ("dynamixer_m", "network.4.0.attn.proj.weight", "stages.1.layers.14.token_mixer.proj.weight"),
    # L: network = [stage(8), down, stage(8), stage(16), stage(4)]
    ("dynamixer_l", "network.4.3.norm2.bias", "stages.1.layers.27.norm2.bias"),
])
def test_consecutive_authors_stages_continue_one_stage(arch, key, converted_key):
    with torch.device("meta"):
        state = official_model(arch).state_dict()
    converted = from_official(arch, state)
    assert converted[converted_key] is state[key]


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
    del state["network.3.0.mlp.fc2.bias"]  # the second of stage B's two Sequentials
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
