"""Determinism and state: same inputs and seed give bitwise-identical results; state dicts
round-trip exactly; a checkpoint of another architecture fails listing the mismatches."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import mlpmix
from conftest import TinyExports
from mlpmix.convert import CheckpointError


def training_step(name, threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = mlpmix.create_model(name, num_classes=10, in_chans=1, drop_path_rate=0.2)
        x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
        out = model(x)  # training mode: DropPath draws from the seeded generator
        grads = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y),
                                    list(model.parameters()))
        return out.detach(), grads
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_same_seed_same_bits(name):
    (out_a, grads_a), (out_b, grads_b) = training_step(name, 2), training_step(name, 2)
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_thread_count(name):
    """Outputs are bitwise equal for 1 and 2 threads. Parameter gradients may differ in the
    last bits: ATen's GEMM and reduction kernels split sums by thread count."""
    (out_1, grads_1), (out_2, grads_2) = training_step(name, 1), training_step(name, 2)
    assert torch.equal(out_1, out_2)
    for g1, g2 in zip(grads_1, grads_2):
        assert_close(g1, g2, rtol=1e-5, atol=1e-7)


def _dynamixer_call():
    x = torch.randn(4, 8, 8, 32, requires_grad=True)
    weights = [torch.randn(8, 32), torch.randn(8), torch.randn(64, 16), torch.randn(64)]
    return x, lambda x: mlpmix.ops.dynamixer(x, *weights, 4, 2)


def _raft_call():
    # a shape that raft's CPU kernel splits into several tiles (2 threads: 2 chunks of them)
    x = torch.randn(4, 24, 16, 40, requires_grad=True)
    weights = [torch.randn(40), torch.randn(40), torch.randn(96, 48) / 7, torch.randn(96),
               torch.randn(48, 96) / 10, torch.randn(48)]
    return x, lambda x: mlpmix.ops.raft_token_mixing(x, *weights, 2, 1)


def _channel_call():
    # 4*24*16 = 1536 tokens: several tiles of channel_mlp's CPU kernel, 2 chunks on 2 threads
    x = torch.randn(4, 24, 16, 40, requires_grad=True)
    weights = [torch.randn(40), torch.randn(40), torch.randn(160, 40) / 7, torch.randn(160),
               torch.randn(40, 160) / 13, torch.randn(40)]
    return x, lambda x: mlpmix.ops.channel_mlp(x, *weights)


@pytest.mark.parametrize("op_threads", [1, 2])
@pytest.mark.parametrize("call", [_dynamixer_call, _raft_call, _channel_call],
                         ids=["dynamixer", "raft", "channel_mlp"])
def test_op_results_do_not_depend_on_thread_count(call, op_threads):
    torch.manual_seed(0)
    x, op = call()

    def run(threads):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = op(x)
            return out.detach(), torch.autograd.grad(out.square().sum(), x)[0]
        finally:
            torch.set_num_threads(previous)

    reference_run, other = run(1), run(op_threads)
    assert torch.equal(reference_run[0], other[0]) and torch.equal(reference_run[1], other[1])


@pytest.mark.parametrize("name", TinyExports.NAMES)
def test_state_dict_round_trip_is_exact(name, tmp_path):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1).eval()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    restored = mlpmix.create_model(name, num_classes=10, in_chans=1,
                                   checkpoint_path=tmp_path / "state.pt").eval()
    for (k, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x), restored(x))


def test_wrong_architecture_lists_mismatches(tmp_path):
    torch.save(mlpmix.create_model("raftmlp_tiny", num_classes=10).state_dict(),
               tmp_path / "raft.pt")
    with pytest.raises(RuntimeError) as info:
        mlpmix.create_model("raftmlp_tiny", num_classes=7, checkpoint_path=tmp_path / "raft.pt")
    assert "head.weight" in str(info.value) and "size mismatch" in str(info.value)
    torch.save(mlpmix.create_model("dynamixer_tiny").state_dict(), tmp_path / "dyna.pt")
    with pytest.raises(CheckpointError, match="missing keys: levels.0"):
        mlpmix.create_model("raftmlp_tiny", checkpoint_path=tmp_path / "dyna.pt")
