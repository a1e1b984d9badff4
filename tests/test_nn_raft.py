"""mlpmix.nn RaftMLP modules against compositions of mlpmix.reference (spec 1.1, 1.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlpmix import reference
from mlpmix.nn import DropPath, MultiScalePatchEmbedding, RaftBlock, RaftTokenMixingBlock
from op_testing import (
    assert_compiles,
    assert_exports_with_dynamic_batch,
    assert_script_round_trip,
)


def randomize(module: nn.Module) -> nn.Module:
    """Random parameters (LayerNorms away from identity) so every parameter matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) / max(p.shape[-1], 1) ** 0.5)
    return module.double().eval()


def reference_token_mixing(block: RaftTokenMixingBlock, x: Tensor) -> Tensor:
    for dim, norm, mlp in ((1, block.norm_v, block.mlp_v), (2, block.norm_h, block.mlp_h)):
        x = x + reference.raft_token_mixing(
            x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight,
            mlp.fc2.bias, block.raft_size, dim, norm.eps,
        )
    return x


@pytest.mark.parametrize("raft_size", [1, 2, 4])
def test_token_mixing_block_is_two_sequential_residuals(raft_size):
    block = randomize(RaftTokenMixingBlock(4, (3, 5), raft_size=raft_size))
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    torch.testing.assert_close(block(x), reference_token_mixing(block, x))


def test_token_mixing_block_parameter_shapes():
    block = RaftTokenMixingBlock(8, (3, 5), raft_size=2, expansion=3)
    shapes = {name: tuple(p.shape) for name, p in block.named_parameters()}
    assert shapes == {
        "norm_v.weight": (8,), "norm_v.bias": (8,),
        "mlp_v.fc1.weight": (18, 6), "mlp_v.fc1.bias": (18,),
        "mlp_v.fc2.weight": (6, 18), "mlp_v.fc2.bias": (6,),
        "norm_h.weight": (8,), "norm_h.bias": (8,),
        "mlp_h.fc1.weight": (30, 10), "mlp_h.fc1.bias": (30,),
        "mlp_h.fc2.weight": (10, 30), "mlp_h.fc2.bias": (10,),
    }  # fmt: skip


def test_token_mixing_block_rejects_indivisible_raft_size():
    with pytest.raises(ValueError, match="raft_size"):
        RaftTokenMixingBlock(6, 4, raft_size=4)


def test_raft_block_adds_the_channel_mlp():
    block = randomize(RaftBlock(4, 3, raft_size=2))
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    mixed = reference_token_mixing(block.token_mixing, x)
    mlp = block.mlp_c
    expected = mixed + mlp.fc2(F.gelu(mlp.fc1(block.norm_c(mixed))))
    torch.testing.assert_close(block(x), expected)
    assert block.mlp_c.fc1.weight.shape == (16, 4)


@pytest.mark.parametrize("size", [(8, 12), (7, 10)])
def test_patch_embedding_resizes_to_a_multiple_of_the_stride(size):
    embed = randomize(MultiScalePatchEmbedding(3, 6, [2, 4]))
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    padded = [-(-n // 2) * 2 for n in size]
    resized = x if list(size) == padded else F.interpolate(
        x, size=padded, mode="bicubic", align_corners=False
    )
    out = embed(x)
    assert out.shape == (2, padded[0] // 2, padded[1] // 2, 6)
    torch.testing.assert_close(
        out, reference.cross_scale_embed(resized, embed.proj.weight, embed.proj.bias, [2, 4])
    )
    assert embed.proj.weight.shape == (6, 3 * (4 + 16))


def test_drop_path_is_per_sample_and_identity_in_eval():
    drop = DropPath(0.5)
    x = torch.randn(64, 3, 4) + 5
    out = drop(x)
    dropped = (out == 0).flatten(1).all(1)
    kept = torch.isclose(out, 2 * x).flatten(1).all(1)
    assert bool((dropped | kept).all()) and 0 < int(dropped.sum()) < 64
    assert drop.eval()(x) is x
    assert DropPath(0.0)(x) is x
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_drop_path_scripts():
    scripted = torch.jit.script(DropPath(0.5))
    out = scripted(torch.ones(32, 2))
    assert set(out.unique().tolist()) <= {0.0, 2.0}


def stage() -> tuple[nn.Module, Tensor]:
    """A RaftMLP level: embedding (with resize) then a block, float32, eval."""
    torch.manual_seed(0)
    model = nn.Sequential(
        MultiScalePatchEmbedding(3, 8, [2, 4]), RaftBlock(8, (3, 4), drop_path=0.1)
    ).eval()
    return model, torch.randn(2, 3, 5, 8)


@pytest.mark.parametrize("part", [0, 1, None])
def test_script_round_trip(part):
    model, x = stage()
    if part == 1:
        model, x = model[1], model[0](x).detach()
    elif part == 0:
        model = model[0]
    assert_script_round_trip(model, x)


def test_torch_compile_fullgraph():
    assert_compiles(*stage())


def test_export_with_dynamic_batch():
    model, x = stage()
    assert_exports_with_dynamic_batch(model, x, torch.randn(5, *x.shape[1:]))


def test_training_backward_reaches_every_parameter():
    model, x = stage()
    model.train()(x).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
