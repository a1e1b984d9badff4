"""mlpmix.nn DynaMixer modules: spec semantics, TorchScript, torch.compile, torch.export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from mlpmix import reference
from mlpmix.nn import DynaMixerBlock, DynaMixerOperation


def reference_operation(op: DynaMixerOperation, tokens: torch.Tensor) -> torch.Tensor:
    """Spec 2.1 on (B', N, D) with the reference op and the module's parameters."""
    mixed = reference.dynamixer(tokens, op.compress.weight, op.compress.bias,
                                op.generate.weight, op.generate.bias, op.num_segments)
    return op.out(mixed)


def reference_block(block: DynaMixerBlock, x: torch.Tensor) -> torch.Tensor:
    """Spec 2.2 written with explicit transposes (what the module avoids)."""
    b, height, width, channels = x.shape
    columns = x.permute(0, 2, 1, 3).reshape(b * width, height, channels)
    h = reference_operation(block.mix_h, columns).reshape(b, width, height, channels).permute(0, 2, 1, 3)
    rows = x.reshape(b * height, width, channels)
    w = reference_operation(block.mix_w, rows).reshape(b, height, width, channels)
    c = x @ block.mlp_c.weight.t()
    a = (h + w + c).mean(dim=(1, 2))
    a = F.linear(F.gelu(F.linear(a, block.reweight.fc1.weight, block.reweight.fc1.bias)),
                 block.reweight.fc2.weight, block.reweight.fc2.bias)
    a = a.reshape(b, channels, 3).softmax(dim=-1)
    y = h * a[:, None, None, :, 0] + w * a[:, None, None, :, 1] + c * a[:, None, None, :, 2]
    return F.linear(y, block.proj.weight, block.proj.bias)


@pytest.fixture(params=[(4, 6), (2, 3)], ids=["folded", "plain"])
def block(request):
    """D=16 over 4x6 tokens runs forward_folded (D < H*W), over 2x3 forward_unfolded."""
    torch.manual_seed(0)
    block = DynaMixerBlock(16, request.param, num_segments=4, reduced_dim=2).double()
    assert block.folded == (request.param == (4, 6))
    return block


def sample(block: DynaMixerBlock, batch: int = 2, requires_grad: bool = False) -> torch.Tensor:
    shape = (batch, block.mix_h.num_tokens, block.mix_w.num_tokens, 16)
    return torch.randn(shape, dtype=torch.float64, requires_grad=requires_grad)


def test_operation_parameters_and_semantics():
    torch.manual_seed(0)
    op = DynaMixerOperation(num_tokens=5, dim=12, num_segments=3, reduced_dim=2).double()
    assert op.compress.weight.shape == (6, 12)
    assert op.generate.weight.shape == (25, 10)
    assert op.out.weight.shape == (12, 12)
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    assert_close(op(x), reference_operation(op, x))


def test_operation_rejects_indivisible_dim():
    with pytest.raises(ValueError, match="num_segments"):
        DynaMixerOperation(4, 10, num_segments=4)


def test_block_matches_spec(block):
    x = sample(block)
    assert_close(block(x), reference_block(block, x))


def test_block_gradients_match_spec(block):
    x = sample(block, requires_grad=True)
    params = [x, *block.parameters()]
    got = torch.autograd.grad(block(x).square().sum(), params)
    want = torch.autograd.grad(reference_block(block, x).square().sum(), params)
    for g, w in zip(got, want):
        assert_close(g, w)


def test_block_does_not_modify_input(block):
    x = sample(block)
    before = x.clone()
    block(x)
    assert torch.equal(x, before)


def test_script_round_trip(block, tmp_path):
    x = sample(block)
    scripted = torch.jit.script(block)
    scripted.save(str(tmp_path / "block.pt"))
    loaded = torch.jit.load(str(tmp_path / "block.pt"))
    assert_close(loaded(x), block(x), rtol=0, atol=0)
    op = torch.jit.script(block.mix_h)
    tokens = torch.randn(3, block.mix_h.num_tokens, 16, dtype=torch.float64)
    assert_close(op(tokens), block.mix_h(tokens), rtol=0, atol=0)


def test_scripted_gradients(block):
    x = sample(block, requires_grad=True)
    (g_script,) = torch.autograd.grad(torch.jit.script(block)(x).sum(), x)
    (g_eager,) = torch.autograd.grad(block(x).sum(), x)
    assert_close(g_script, g_eager)


def test_compile_fullgraph(block):
    x = sample(block, requires_grad=True)
    compiled = torch.compile(block, fullgraph=True)
    out = compiled(x)
    assert_close(out, block(x))
    (g_compiled,) = torch.autograd.grad(out.sum(), x)
    (g_eager,) = torch.autograd.grad(block(x).sum(), x)
    assert_close(g_compiled, g_eager)


def test_export_with_dynamic_batch(block):
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(block, (sample(block, 3),),
                                  dynamic_shapes={"x": {0: batch}})
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "mlpmix.dynamixer.default" in targets
    for b in (1, 5):
        x = sample(block, b)
        assert_close(program.module()(x), block(x))
