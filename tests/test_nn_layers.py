"""mlpmix.nn.layers: the channel MLP and the residual add shared by the RaftMLP and DynaMixer
blocks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import mlpmix
from mlpmix.models.dynamixer import DynaMixerLayer
from mlpmix.nn import RaftBlock
from mlpmix.nn.layers import ChannelMlp, add_residual


def branch_of(x: Tensor) -> Tensor:
    """A fresh intermediate, as a block's branch output is."""
    return x.mul(3.0)


def test_fused_adds_into_the_branch_in_place():
    x = torch.randn(2, 3, 4)
    branch = branch_of(x)
    out = add_residual(x, branch)
    assert out.data_ptr() == branch.data_ptr()
    torch.testing.assert_close(out, 4 * x, rtol=0, atol=0)


def test_reference_returns_a_new_tensor_and_leaves_the_branch():
    x = torch.randn(2, 3, 4)
    branch = branch_of(x)
    with mlpmix.implementation.use("reference"):
        out = add_residual(x, branch)
    assert out.data_ptr() not in (x.data_ptr(), branch.data_ptr())
    torch.testing.assert_close(branch, 3 * x, rtol=0, atol=0)


@pytest.mark.parametrize("branch_dtype", [torch.bfloat16, torch.float64])
def test_mismatched_dtype_promotes_as_plus_does(branch_dtype):
    x = torch.randn(2, 3, 4)
    branch = branch_of(x).to(branch_dtype)
    expected = x + branch
    out = add_residual(x, branch)
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_broadcast_branch_is_not_written_in_place():
    x = torch.randn(2, 3, 4)
    branch = torch.randn(4)
    out = add_residual(x, branch)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x + branch, rtol=0, atol=0)


def test_gradients_reach_both_operands():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 3, 4, dtype=torch.float64)
    (add_residual(x, x * w) * weights).sum().backward()
    torch.testing.assert_close(x.grad, weights * (1 + w))
    torch.testing.assert_close(w.grad, (weights * x).sum((0, 1)))


def test_scripts():
    class Residual(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return add_residual(x, x * 2.0)

    x = torch.randn(3, 5)
    torch.testing.assert_close(torch.jit.script(Residual())(x), 3 * x, rtol=0, atol=0)


@pytest.mark.parametrize("make_block, shape", [
    (lambda: RaftBlock(8, (4, 6), drop_path=0.3), (6, 4, 6, 8)),
    (lambda: DynaMixerLayer(8, 4, 2, 2, 3, drop_path=0.3), (6, 4, 4, 8)),
], ids=["raft_block", "dynamixer_layer"])
def test_training_block_with_drop_path_matches_the_reference(make_block, shape):
    """In-place residuals under DropPath (kept and dropped samples) and autograd."""
    torch.manual_seed(0)
    block = make_block().double().train()
    x = torch.randn(shape, dtype=torch.float64)
    results = []
    for impl in ("reference", "fused"):
        block.zero_grad(set_to_none=True)
        inp = x.clone().requires_grad_()
        torch.manual_seed(1)
        with mlpmix.implementation.use(impl):
            out = block(inp)
            (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append([out.detach(), inp.grad] + [p.grad for p in block.parameters()])
    for ref, fused in zip(*results):
        torch.testing.assert_close(fused, ref)


@pytest.mark.parametrize("owner", [lambda: RaftBlock(8, 4).eval(),
                                   lambda: DynaMixerLayer(8, 4, 2, 2, 3, 0.0).eval()],
                         ids=["raft", "dynamixer"])
def test_both_families_run_their_channel_branch_through_channel_mlp(owner):
    block = owner()
    mlps = [m for m in block.modules() if isinstance(m, ChannelMlp)]
    assert len(mlps) == 1
    assert {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"} == set(mlps[0].state_dict())


def test_channel_mlp_is_layernorm_then_the_mlp():
    torch.manual_seed(0)
    mlp, norm = ChannelMlp(6, 12).double(), nn.LayerNorm(6).double()
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    expected = mlp.fc2(nn.functional.gelu(mlp.fc1(norm(x))))
    torch.testing.assert_close(mlp(x, norm.weight, norm.bias, norm.eps), expected)
