"""The CUDA kernels, run on the CPU: tests/cpp/emulated_kernels.cpp compiles the device code
of cpp/ops/*/*_kernels.cuh against tests/cpp/cuda_emulation.h (each block's threads are
std::threads, __syncthreads a barrier, warp shuffles exchanged through a buffer), so their
indexing, strides, synchronisation and arithmetic are checked on machines without a GPU,
against the same references as the ops, over the ops' own sample inputs. What a GPU adds
(launch configuration, shared-memory limits, cuBLAS, timing) is tested by tests/test_cuda.py
where one is present; the ATen compositions of the other CUDA kernels, by
tests/test_aten_kernels.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils import cpp_extension

import test_ops_dynamixer
import test_ops_raft_token_mixing
from conftest import REPO
from op_testing import TOLERANCES, assert_low_precision_accuracy

pytestmark = pytest.mark.slow  # compiles the kernels for the CPU (about a minute)

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    cpp_extension.load(
        name="mlpmix_emulated_kernels",
        sources=[str(REPO / "tests" / "cpp" / "emulated_kernels.cpp"),
                 str(REPO / "cpp" / "common" / "sequences.cpp")],
        extra_include_paths=[str(REPO / "cpp")],
        extra_cflags=["-O1", "-std=c++20"],
        build_directory=str(tmp_path_factory.mktemp("emulated_kernels")),
        is_python_module=False,
    )
    return torch.ops.mlpmix_emulated


# ---- dynamixer: softmax over input tokens and per-segment mixing -------------------------


def dynamixer_logits(x, compress_weight, compress_bias, generate_weight, generate_bias,
                     num_segments, dim):
    """Steps 1-2 of spec 2.1 as the op's ATen code computes them: (B', S, N*N)."""
    tokens = x.movedim(dim, -2)
    n, channels = tokens.shape[-2:]
    z = F.linear(tokens.reshape(-1, n, channels), compress_weight, compress_bias)
    z = rearrange(z, "b n (s k) -> b s (n k)", s=num_segments)
    return F.linear(z, generate_weight, generate_bias).contiguous()


def mix_reference(logits, x, num_segments, dim):
    """Steps 3-4 of spec 2.1 given the logits (mlpmix.reference's einsum)."""
    tokens = x.movedim(dim, -2)
    batch_shape, (n, channels) = tokens.shape[:-2], tokens.shape[-2:]
    weights = rearrange(logits, "b s (i j) -> b s i j", i=n).softmax(dim=-2)
    segments = rearrange(tokens.reshape(-1, n, channels), "b n (s c) -> b s n c", s=num_segments)
    mixed = rearrange(torch.einsum("bsij,bsic->bsjc", weights, segments), "b s n c -> b n (s c)")
    return mixed.reshape(*batch_shape, n, channels).movedim(-2, dim)


def dynamixer_samples(dtype):
    """(logits, x, grad_out, S, dim) from the op's sample inputs (x keeps its strides; the
    gradient is read through a transposed view)."""
    torch.manual_seed(0)
    for args in test_ops_dynamixer.sample_inputs(torch.float64):
        x, num_segments, dim = args[0], args[5], args[6] % args[0].dim()
        logits = dynamixer_logits(*args[:5], num_segments, dim)
        grad_out = torch.randn(x.shape[::-1], dtype=torch.float64).permute(
            *reversed(range(x.dim())))
        yield [t.to(dtype) for t in (logits, x, grad_out)] + [num_segments, dim]


@pytest.mark.parametrize("path", ["kernel", "aten"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamixer_mixing(emulated, dtype, path):
    for blocks in (1, 3):
        for logits, x, grad_out, num_segments, dim in dynamixer_samples(dtype):
            aten = path == "aten"

            def kernel(logits, x):
                return emulated.dynamixer_mix(logits, x, num_segments, dim, blocks, aten)

            def kernel_backward(logits, x, grad_out):
                grad_x, grad_logits = emulated.dynamixer_mix_backward(
                    logits, x, grad_out, num_segments, dim, blocks, aten)
                return grad_logits, grad_x

            check_against_autograd(kernel, kernel_backward,
                                   lambda logits, x: mix_reference(logits, x, num_segments, dim),
                                   [logits, x], grad_out)


def check_against_autograd(kernel, kernel_backward, reference, inputs, grad_out):
    """kernel(*inputs) and kernel_backward(*inputs, grad_out) (the gradients of all inputs)
    against `reference` and its autograd gradients: to TOLERANCES in float64/float32, by the
    flash-attention rule in float16/bfloat16."""
    dtype = inputs[0].dtype
    got = [kernel(*inputs), *kernel_backward(*inputs, grad_out)]

    def evaluate(tensors, grad):
        leaves = [t.detach().requires_grad_() for t in tensors]
        out = reference(*leaves)
        return [out.detach(), *torch.autograd.grad(out, leaves, grad.to(out.dtype))]

    if dtype in TOLERANCES:
        for g, want in zip(got, evaluate(inputs, grad_out)):
            torch.testing.assert_close(g, want, **TOLERANCES[dtype])
        return
    truth = evaluate([t.double() for t in inputs], grad_out.double())
    for g, baseline, want in zip(got, evaluate(inputs, grad_out), truth):
        assert_low_precision_accuracy(g, baseline, want)


# ---- raft_token_mixing: LayerNorm into and out of the rows layout ------------------------

_REGROUP = {1: "b h w (r o) -> (b o w) (r h)", 2: "b h w (r o) -> (b o h) (r w)"}


def raft_samples(dtype):
    torch.manual_seed(1)
    for args in test_ops_raft_token_mixing.sample_inputs(torch.float64):
        x, weight, bias, raft_size, dim = args[0], args[1], args[2], args[7], args[8] % 4
        yield x.to(dtype), weight.to(dtype), bias.to(dtype), raft_size, dim


@pytest.mark.parametrize("dtype", DTYPES)
def test_raft_normalize_into_rows(emulated, dtype):
    for blocks in (1, 3):
        for x, weight, bias, raft_size, dim in raft_samples(dtype):
            eps = 1e-5

            def kernel(x, weight, bias):
                return emulated.raft_normalize(x, weight, bias, eps, raft_size, dim, blocks)

            def reference(x, weight, bias):
                rows = [rearrange(F.layer_norm(x, x.shape[-1:], w, b, eps), _REGROUP[dim],
                                  r=raft_size)
                        for w, b in ((weight, bias), (None, None))]
                lines = "b h w -> (b w) h" if dim == 1 else "b h w -> (b h) w"
                mean = rearrange(x.mean(-1), lines)
                variance = rearrange((x - x.mean(-1, keepdim=True)).square().mean(-1), lines)
                return [*rows, mean, (variance + eps).rsqrt()]

            got = kernel(x, weight, bias)
            expected = reference(*(t.double() for t in (x, weight, bias)))
            baseline = reference(x, weight, bias)
            for g, base, want in zip(got, baseline, expected):
                if dtype in TOLERANCES:
                    torch.testing.assert_close(g.double(), want, **TOLERANCES[dtype])
                else:
                    assert_low_precision_accuracy(g, base, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_raft_normalize_backward(emulated, dtype):
    eps = 1e-5
    for blocks in (1, 3):
        for x, _, _, raft_size, dim in raft_samples(dtype):
            _, _, mean, rstd = emulated.raft_normalize(x, torch.ones(x.shape[-1], dtype=dtype),
                                                       torch.zeros(x.shape[-1], dtype=dtype), eps,
                                                       raft_size, dim, 1)
            rows_shape = rearrange(x, _REGROUP[dim], r=raft_size).shape
            grad_rows = torch.randn(rows_shape, dtype=torch.float64).to(dtype)

            def reference(x):
                return rearrange(F.layer_norm(x, x.shape[-1:], eps=eps), _REGROUP[dim],
                                 r=raft_size)

            check_against_autograd(
                lambda x: emulated.raft_normalize(x, torch.ones(x.shape[-1], dtype=dtype),
                                                  torch.zeros(x.shape[-1], dtype=dtype), eps, raft_size,
                                                  dim, blocks)[1],
                lambda x, g: [emulated.raft_normalize_backward(g, x, mean, rstd, raft_size, dim,
                                                               blocks)],
                reference, [x], grad_rows)
