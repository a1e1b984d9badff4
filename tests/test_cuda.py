"""The CUDA kernels on a GPU (the whole file is skipped without one).

Every op runs its own sample inputs (the table of tests/test_ops.py: permuted, sliced and
channel-strided views, no biases, empty batches) copied to the GPU with their strides, and is
compared with mlpmix.reference on the CPU in float64, forward and backward; lower precisions
are judged by the flash-attention rule against the reference computed on the GPU in the same
precision. Then gradcheck, opcheck, autocast, devices, large shapes, CUDA graphs and
deterministic mode.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch.testing import assert_close

import mlpmix
import test_ops_channel_mlp
import test_ops_cross_scale_embed
import test_ops_dynamixer
import test_ops_raft_token_mixing
from mlpmix import ops, reference
from op_testing import (
    TOLERANCES,
    assert_low_precision_matches_reference,
    assert_rejected,
    differentiable,
    gradcheck_sample,
    on_device,
    outputs_and_grads,
)
from test_ops import CASES

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# name: (op, reference, sample_inputs(dtype, requires_grad)), for every op of mlpmix.ops
OPS = {case.name: (case.op, case.reference, case.sample_inputs) for case in CASES}
LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("name", OPS)
def test_float64_matches_cpu_reference(name):
    op, ref, samples = OPS[name]
    torch.manual_seed(0)
    for args in samples(torch.float64, requires_grad=True):
        truth_out = ref(*args)
        grad_out = torch.randn_like(truth_out)
        got = outputs_and_grads(op, on_device(args, "cuda"), grad_out)
        for g, want in zip(got, outputs_and_grads(ref, args, grad_out)):
            assert g.is_cuda
            assert_close(g.cpu(), want, **TOLERANCES[torch.float64])


@pytest.fixture
def no_tf32():
    """cross_scale_embed's convolution follows torch.backends.cudnn.allow_tf32 (on by default,
    as for every convolution), which a float32 accuracy test must turn off."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.usefixtures("no_tf32")
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("name", OPS)
def test_low_precision_accuracy(name, dtype):
    """err(op in dtype on CUDA) <= 2 err(reference in dtype on CUDA) + a few ulp, both
    against the float64 CPU reference, outputs and gradients."""
    op, ref, samples = OPS[name]
    torch.manual_seed(1)
    for args in samples(torch.float64, requires_grad=True):
        assert_low_precision_matches_reference(op, ref, args, "cuda", dtype)


@pytest.mark.parametrize("name", OPS)
def test_gradcheck(name):
    op, _, samples = OPS[name]
    torch.manual_seed(2)
    for args in samples(torch.float64, requires_grad=True):
        if args[0].numel():  # expanded (stride-0) samples are expanded inside the check
            assert gradcheck_sample(op, on_device(args, "cuda"), fast_mode=True)


@pytest.mark.parametrize("name", OPS)
def test_opcheck(name):
    _, _, samples = OPS[name]
    forward = getattr(torch.ops.mlpmix, name).default
    backward = getattr(torch.ops.mlpmix, f"{name}_backward").default
    torch.manual_seed(3)
    for args in samples(torch.float32, requires_grad=True):
        torch.library.opcheck(forward, on_device(args, "cuda"))
    for args in samples(torch.float32):
        # the forward's defaulted arguments (raft's eps) are required by the backward
        cuda_args = on_device(args, "cuda") + [
            a.default_value for a in forward._schema.arguments[len(args):]]
        grad_out = torch.randn_like(forward(*cuda_args))
        torch.library.opcheck(backward, [grad_out, *cuda_args])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", OPS)
def test_autocast_runs_in_the_autocast_dtype(name, dtype):
    """Under torch.autocast("cuda", dtype) the op casts its float32 inputs to dtype, like a
    matmul: the result equals the op on inputs cast by hand, and gradients reach the float32
    leaves in float32."""
    op, _, samples = OPS[name]
    torch.manual_seed(4)
    for args in samples(torch.float32, requires_grad=True):
        cuda_args = on_device(args, "cuda")
        with torch.autocast("cuda", dtype=dtype):
            out = op(*cuda_args)
        assert out.dtype == dtype
        cast_by_hand = [a.to(dtype) if isinstance(a, torch.Tensor) else a for a in cuda_args]
        assert torch.equal(out, op(*cast_by_hand))
        inputs = differentiable(cuda_args)
        grads = torch.autograd.grad(out.float().sum(), inputs)
        assert all(g.dtype == torch.float32 for g in grads)


@pytest.mark.parametrize("name", OPS)
def test_autocast_leaves_float64_alone(name):
    op, _, samples = OPS[name]
    args = on_device(next(samples(torch.float64)), "cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert op(*args).dtype == torch.float64


def test_expanded_input_reads_in_place():
    args = test_ops_dynamixer.make_args((1, 5, 12), 3, 2, 1, torch.float64)
    args[0] = args[0].expand(4, 5, 12)  # stride 0 over the batch
    assert_close(ops.dynamixer(*on_device(args, "cuda")).cpu(), reference.dynamixer(*args))


@pytest.mark.parametrize("n", [40, 120, 200])
def test_dynamixer_large_token_count(n):
    """N*N accumulators: 40 fits the default shared memory, 120 needs the opt-in limit
    (float64: 115 KiB forward, 225 KiB backward) and 200 falls back to the ATen path."""
    torch.manual_seed(5)
    args = test_ops_dynamixer.make_args((2, n, 4), 2, 1, -2, torch.float64, requires_grad=True)
    truth_out = reference.dynamixer(*args)
    grad_out = torch.randn_like(truth_out)
    got = outputs_and_grads(ops.dynamixer, on_device(args, "cuda"), grad_out)
    for g, want in zip(got, outputs_and_grads(reference.dynamixer, args, grad_out)):
        assert_close(g.cpu(), want, **TOLERANCES[torch.float64])


def test_arguments_on_another_device_are_named():
    args = test_ops_dynamixer.make_args((2, 4, 6, 8), 4, 1, 1, torch.float32)
    cuda_args = on_device(args, "cuda")
    for position, name in [(1, "compress_weight"), (3, "generate_weight"), (4, "generate_bias")]:
        mixed = list(cuda_args)
        mixed[position] = args[position]
        assert_rejected(ops.dynamixer, mixed, "dynamixer", name)
    x_on_cpu = [args[0], *cuda_args[1:]]
    assert_rejected(ops.dynamixer, x_on_cpu, "dynamixer", "compress_weight")
    raft = on_device(next(test_ops_raft_token_mixing.sample_inputs(torch.float32)), "cuda")
    raft[5] = raft[5].cpu()
    assert_rejected(ops.raft_token_mixing, raft, "raft_token_mixing", "fc2_weight")
    channel = on_device(next(test_ops_channel_mlp.sample_inputs(torch.float32)), "cuda")
    channel[4] = channel[4].cpu()
    assert_rejected(ops.channel_mlp, channel, "channel_mlp", "fc1_bias")
    channel = on_device(next(test_ops_channel_mlp.sample_inputs(torch.float32)), "cuda")
    channel[1] = channel[1].cpu()
    assert_rejected(ops.channel_mlp, channel, "channel_mlp", "norm_weight")
    embed = on_device(next(test_ops_cross_scale_embed.sample_inputs(torch.float32)), "cuda")
    embed[2] = embed[2].cpu()
    assert_rejected(ops.cross_scale_embed, embed, "cross_scale_embed", "bias")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
@pytest.mark.parametrize("name", OPS)
def test_second_gpu(name):
    """The kernels run on the device of their inputs, not the current one."""
    op, ref, samples = OPS[name]
    args = next(samples(torch.float64))
    with torch.cuda.device(0):
        out = op(*on_device(args, "cuda:1"))
    assert out.device == torch.device("cuda:1")
    assert_close(out.cpu(), ref(*args), **TOLERANCES[torch.float64])


def _free_gpu_memory() -> int:
    return torch.cuda.mem_get_info()[0]


@pytest.mark.skipif(not torch.cuda.is_available() or _free_gpu_memory() < 40 * 2**30,
                    reason="needs 40 GiB of free GPU memory")
def test_index_arithmetic_past_2_31_elements():
    """x with more than 2**31 elements: the last sequence's result equals the op on that
    sequence alone (32-bit offsets would wrap and read or write elsewhere)."""
    torch.manual_seed(6)
    dtype = torch.bfloat16
    # dynamixer: (B, N, D) with B*N*D > 2**31; logits (B, S, N*N) past 2**31 as well
    n, channels, segments = 16, 64, 4
    batch = 2**31 // (n * channels) + 3
    x = torch.randn(batch, n, channels, device="cuda", dtype=dtype)
    weights = [w.to("cuda", dtype) for w in test_ops_dynamixer.make_args(
        (1, n, channels), segments, 2, 1, torch.float32)[1:5]]
    with torch.no_grad():
        tail = ops.dynamixer(x, *weights, segments, 1)[-2:]
        assert_close(tail, ops.dynamixer(x[-2:], *weights, segments, 1))
    del x, tail
    torch.cuda.empty_cache()
    # raft_token_mixing: (B, H, W, C) with B*H*W*C > 2**31
    args = test_ops_raft_token_mixing.make_args((1, 8, 8, 64), 2, 1, "contiguous", torch.float32)
    x = torch.randn(2**31 // (8 * 8 * 64) + 3, 8, 8, 64, device="cuda", dtype=dtype)
    params = [p.to("cuda", dtype) for p in args[1:7]]
    with torch.no_grad():
        tail = ops.raft_token_mixing(x, *params, 2, 1)[-2:]
        assert_close(tail, ops.raft_token_mixing(x[-2:], *params, 2, 1))
    del x, tail
    torch.cuda.empty_cache()
    # channel_mlp: (T, C) with T*C > 2**31 tokens' channels
    args = test_ops_channel_mlp.make_args((1, 64), "contiguous", torch.float32, 128)
    x = torch.randn(2**31 // 64 + 3, 64, device="cuda", dtype=dtype)
    params = [p.to("cuda", dtype) for p in args[1:7]]
    with torch.no_grad():
        tail = ops.channel_mlp(x, *params)[-2:]
        assert_close(tail, ops.channel_mlp(x[-2:], *params))


@pytest.mark.parametrize("name", ["raftmlp_tiny", "dynamixer_tiny"])
def test_compiled_with_cuda_graphs(name):
    """torch.compile(mode="reduce-overhead") captures the ops in CUDA graphs: replays equal
    eager results, forward and backward."""
    torch.manual_seed(7)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1).cuda()
    compiled = torch.compile(model, mode="reduce-overhead")
    for step in range(3):
        x = torch.randn(4, 1, 8, 8, device="cuda")
        expected = model(x)
        out = compiled(x)
        assert_close(out, expected, **TOLERANCES[torch.float32])
        grads = torch.autograd.grad(out.sum(), list(model.parameters()))
        expected_grads = torch.autograd.grad(expected.sum(), list(model.parameters()))
        for g, want in zip(grads, expected_grads):
            assert_close(g, want, rtol=1e-4, atol=1e-5)


DETERMINISM = """
import torch, mlpmix
torch.use_deterministic_algorithms(True)
def step(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1).cuda()
    x = torch.randn(16, 1, 8, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    grads = torch.autograd.grad(out.float().sum(), list(model.parameters()))
    return [out, *grads]
for name in ("raftmlp_tiny", "dynamixer_tiny"):
    a, b = step(name), step(name)
    assert all(torch.equal(u, v) for u, v in zip(a, b)), name
print("ok")
"""


def test_deterministic_mode_gives_identical_bits():
    """With torch.use_deterministic_algorithms(True) (and cuBLAS's workspace setting, which
    must be in the environment before CUDA starts) training steps raise no error and repeat
    bit for bit."""
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")
    result = subprocess.run([sys.executable, "-c", DETERMINISM], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok"]


def test_build_lists_cuda():
    assert "cuda" in mlpmix.build_info()["backends"]
