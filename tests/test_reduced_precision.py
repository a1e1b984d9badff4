"""The models in bfloat16 and float16 on CPU: under torch.autocast("cpu") (float32 parameters)
and cast with .to(dtype), every mlpmix op runs in the reduced dtype, the models run and
train, gradients reach float32 parameters in float32, and torch.compile, torch.export and
TorchScript keep working. Per-op accuracy is in tests/test_ops.py; here, at sizes whose
matrix products run in the reduced dtype (oneDNN's bf16 matmul where the CPU has one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import mlpmix
from op_testing import assert_low_precision_accuracy, assert_low_precision_matches_reference

PUBLISHED = ["raftmlp_s", "raftmlp_m", "raftmlp_l", "dynamixer_s", "dynamixer_m", "dynamixer_l"]
TINY = ["raftmlp_tiny", "dynamixer_tiny"]
REDUCED = [torch.bfloat16, torch.float16]


class MlpmixOpDtypes(TorchDispatchMode):
    """Records the dtypes of the tensor arguments of every mlpmix op called."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, set[torch.dtype]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "mlpmix":
            dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor)}
            self.calls.append((func.name(), dtypes))
        return func(*args, **(kwargs or {}))


def tiny_batch(in_chans: int = 3, size: int = 8):
    torch.manual_seed(0)
    return torch.randn(4, in_chans, size, size), torch.randint(0, 10, (4,))


def assert_ops_ran_in(calls, dtype):
    assert calls, "no mlpmix op ran"
    for op, dtypes in calls:
        assert dtypes == {dtype}, (op, dtypes)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_model_trains_under_bf16_autocast(name):
    """One training step at 224x224 under bfloat16 autocast gives bfloat16 logits and float32
    gradients for the float32 parameters (which ops run, in which dtype: the tiny models'
    tests below)."""
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10)
    x, y = torch.randn(1, 3, 224, 224), torch.tensor([3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    F.cross_entropy(logits.float(), y).backward()
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    for parameter in model.parameters():
        assert parameter.grad is not None and parameter.grad.dtype == torch.float32
        assert torch.isfinite(parameter.grad).all()


@pytest.mark.parametrize("name", TINY)
def test_every_op_runs_in_bf16_under_autocast(name):
    """Forward and backward: every mlpmix op of the model runs in bfloat16."""
    model = mlpmix.create_model(name, num_classes=10)
    x, y = tiny_batch()
    with MlpmixOpDtypes() as recorded:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
    assert_ops_ran_in(recorded.calls, torch.bfloat16)
    assert any(op.endswith("_backward") for op, _ in recorded.calls)


@pytest.mark.parametrize("dtype", REDUCED, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", TINY)
def test_autocast_logits_are_as_accurate_as_the_references(name, dtype):
    """Against the float64 model, the fused model's logits under autocast err at most twice
    as much as the reference implementation's under the same autocast."""
    model = mlpmix.create_model(name, num_classes=10).eval()
    x, _ = tiny_batch()
    with torch.no_grad():
        truth = model.double()(x.double())
        model.float()
        with torch.autocast("cpu", dtype=dtype):
            fused = model(x)
            with mlpmix.implementation.use("reference"):
                baseline = model(x)
    assert fused.dtype == dtype
    assert_low_precision_accuracy(fused, baseline, truth)


class UnderAutocast(torch.nn.Module):
    """Runs `inner` under bfloat16 CPU autocast."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(images)


def test_compile_under_autocast():
    """A model under autocast compiles (fullgraph) with the eager outputs (dynamixer_tiny;
    raftmlp_tiny's ops compile in the training step below)."""
    torch.manual_seed(0)
    model = UnderAutocast(mlpmix.create_model("dynamixer_tiny", num_classes=10).eval())
    x, _ = tiny_batch()
    with torch.no_grad():
        compiled = torch.compile(model, fullgraph=True)(x)
        assert compiled.dtype == torch.bfloat16
        assert_close(compiled, model(x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", TINY)
def test_export_under_autocast(name):
    """A model under autocast exports with a dynamic batch, with the eager outputs."""
    torch.manual_seed(0)
    model = UnderAutocast(mlpmix.create_model(name, num_classes=10).eval())
    x, _ = tiny_batch()
    exported = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    with torch.no_grad():
        for batch in (x, torch.randn(2, 3, 8, 8)):
            out = exported.module()(batch)
            assert out.dtype == torch.bfloat16
            assert_close(out, model(batch), rtol=0, atol=0)


def test_compiled_training_step_under_autocast():
    """torch.compile of a training step under autocast: float32 gradients that err, against
    the float32 step's, at most twice as much as the eager autocast step's, plus bfloat16's
    resolution at the scale of the largest gradient (the two round at different places)."""
    torch.manual_seed(0)
    model = mlpmix.create_model("raftmlp_tiny", num_classes=10)
    x, y = tiny_batch()

    def step(m, autocast=True):
        logits = UnderAutocast(m)(x) if autocast else m(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    loss, grads = step(torch.compile(model, fullgraph=True))
    eager_loss, eager_grads = step(model)
    _, truth = step(model, autocast=False)
    assert_close(loss, eager_loss, rtol=2e-2, atol=2e-2)
    floor = 2 ** -7 * max(t.abs().max().item() for t in truth)
    for g, e, t in zip(grads, eager_grads, truth):
        assert g.dtype == torch.float32
        error, eager_error = (g - t).abs().max().item(), (e - t).abs().max().item()
        assert error <= 2 * eager_error + floor, (error, eager_error, floor)


@pytest.mark.parametrize("dtype", REDUCED, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", TINY)
def test_model_cast_to_reduced_precision_trains_and_scripts(name, dtype, tmp_path):
    """model.to(dtype): forward and backward run the ops in dtype, gradients are in dtype,
    and the model scripts, saves and loads with the same outputs."""
    model = mlpmix.create_model(name, num_classes=10).to(dtype)
    x, y = tiny_batch()
    x = x.to(dtype)
    with MlpmixOpDtypes() as recorded:
        F.cross_entropy(model(x).float(), y).backward()
    assert_ops_ran_in(recorded.calls, dtype)
    assert all(p.grad.dtype == dtype and torch.isfinite(p.grad).all()
               for p in model.parameters())
    model.eval()
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    with torch.inference_mode():
        out = torch.jit.load(str(tmp_path / "model.pt"))(x)
        assert out.dtype == dtype
        assert torch.equal(out, model(x))


def large_products(name: str) -> list:
    """float64 arguments of op `name` whose matrix products reach gemm_cpu's 8 M multiply-add
    bound, above which a reduced-precision call multiplies in its dtype (the op tests'
    samples are too small to get there)."""
    torch.manual_seed(0)

    def leaf(*shape):
        return (torch.randn(*shape, dtype=torch.float64) / shape[-1] ** 0.5).requires_grad_()
    if name == "linear":  # 2048 x 256 x 256
        return [leaf(4, 512, 256), leaf(256, 256), leaf(256)]
    if name == "channel_mlp":  # tiles of 512 tokens x 128 x 512
        return [leaf(4, 16, 32, 128), leaf(128), leaf(128), leaf(512, 128), leaf(512),
                leaf(128, 512), leaf(128), 1e-5]
    # dynamixer: 32 tokens, 4 segments of d = 2: logits of 128 rows x 64 x 1024 per chunk
    return [leaf(2, 32, 32, 64), leaf(8, 64), leaf(8), leaf(1024, 64), leaf(1024), 4, 1]


@pytest.mark.parametrize("dtype", REDUCED, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["linear", "channel_mlp", "dynamixer"])
def test_large_products_in_reduced_precision_are_as_accurate_as_the_references(name, dtype):
    assert_low_precision_matches_reference(getattr(mlpmix.ops, name),
                                           getattr(mlpmix.reference, name),
                                           large_products(name), "cpu", dtype)


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="oneDNN runs no bfloat16 matmul on this CPU")
def test_large_products_run_in_onednns_bf16_matmul():
    code = ("import torch, mlpmix\n"
            "x, w = torch.randn(2048, 256).bfloat16(), torch.randn(256, 256).bfloat16()\n"
            "print('start')\n"
            "mlpmix.ops.linear(x, w, None)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, ONEDNN_VERBOSE="1"), timeout=300)
    assert result.returncode == 0, result.stderr
    after = result.stdout.split("start", 1)[1]
    # A matmul, or (on CPUs with native bf16 products) an inner product with the bias.
    assert re.search(r"exec,cpu,(matmul|inner_product),.*src:bf16", after), after[-3000:]


# Every op's first sample in bfloat16 through the float32-copy path (cpu::in_float32), which
# CPUs without native bfloat16 take and MLPMIX_CPU_BF16=float32 forces: the environment
# variable is read once per process, hence a process of its own.
FLOAT32_COPY_PATH_CHECK = """
import torch
from op_testing import assert_low_precision_matches_reference
from test_ops import CASES
torch.manual_seed(1)
for case in CASES:
    args = next(iter(case.samples(torch.float64, requires_grad=True)))
    assert_low_precision_matches_reference(case.op, case.reference, args, "cpu", torch.bfloat16)
print("checked", len(CASES))
"""


def run_op_checks(script: str, **variables: str) -> None:
    """`script` in a process of its own with these environment variables (mlpmix reads them
    once per process), the tests folder importable; it must end by printing `checked N`."""
    env = dict(os.environ, **variables,
               PYTHONPATH=os.pathsep.join([os.path.dirname(__file__),
                                           os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert re.search(r"checked \d+", result.stdout)


def test_bfloat16_through_float32_copies_matches_the_reference():
    run_op_checks(FLOAT32_COPY_PATH_CHECK, MLPMIX_CPU_BF16="float32")


# Every op through the AVX2 builds of the kernels that have AVX-512 builds of their own
# (MLPMIX_CPU_ISA=avx2; the default on an AVX2-only CPU): float64, float32 and bfloat16
# against the reference, forward and backward, every sample's strides.
AVX2_KERNELS_CHECK = """
import torch
from test_ops import (CASES, DTYPES, test_matches_reference_and_its_gradients,
                      test_reduced_precision_error_is_at_most_twice_the_references)
for case in CASES:  # tests/test_ops.py's own checks, on the AVX2 path
    for dtype in DTYPES:
        test_matches_reference_and_its_gradients(case, dtype)
    test_reduced_precision_error_is_at_most_twice_the_references(case, torch.bfloat16)
print("checked", len(CASES))
"""


def test_the_avx2_kernels_match_the_reference():
    run_op_checks(AVX2_KERNELS_CHECK, MLPMIX_CPU_ISA="avx2")


# A call that reads each variable, with a bad value: the error names it and what it may be.
BAD_VARIABLES = {
    "MLPMIX_CPU_ISA": ("avx1024", "must be auto or avx2",
                       "x = torch.randn(2, 4, 4, 8)\n"
                       "mlpmix.ops.dynamixer(x, torch.randn(4, 8), None, torch.randn(16, 8), None, "
                       "2, 1)\n"),
    "MLPMIX_CPU_BF16": ("fast", "must be auto or float32",
                        "x = torch.randn(2, 4, 4, 8, dtype=torch.bfloat16)\n"
                        "mlpmix.ops.linear(x, torch.randn(3, 8, dtype=torch.bfloat16), None)\n"
                        "mlpmix.ops.channel_mlp(x, *[torch.randn(*s, dtype=torch.bfloat16) for s "
                        "in [(8,), (8,), (16, 8), (16,), (8, 16), (8,)]], 1e-5)\n"),
}


@pytest.mark.parametrize("variable", sorted(BAD_VARIABLES))
def test_a_bad_environment_value_is_named(variable):
    value, expected, calls = BAD_VARIABLES[variable]
    result = subprocess.run([sys.executable, "-c", "import torch, mlpmix\n" + calls],
                            capture_output=True, text=True,
                            env=dict(os.environ, **{variable: value}))
    assert result.returncode != 0
    assert f"{variable} {expected}, got '{value}'" in result.stderr
