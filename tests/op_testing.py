"""Checks shared by the operator test files. Each op file (tests/test_ops_<op>.py) defines one
``sample_inputs`` generator of positional argument lists, which tests/test_ops.py runs through
the generic checks; these helpers run one sample through one check."""

from __future__ import annotations

import io
import re
from typing import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn

TOLERANCES = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
}


def assert_low_precision_accuracy(got: Tensor, baseline: Tensor, truth: Tensor) -> None:
    """Flash-attention's rule for a low-precision result: its largest error against the
    float64 `truth` is at most twice that of `baseline` (the reference computed in the same
    low precision), plus a floor of a couple of units in the last place of that precision."""
    if truth.numel() == 0:
        return
    error = (got.double() - truth).abs().max().item()
    baseline_error = (baseline.double() - truth).abs().max().item()
    floor = max(1e-6, 2 * torch.finfo(got.dtype).eps) * max(truth.abs().max().item(), 1.0)
    assert error <= 2 * baseline_error + floor, (error, baseline_error, floor)


def differentiable(args: Sequence[object]) -> list[Tensor]:
    return [a for a in args if isinstance(a, Tensor) and a.requires_grad]


def outputs_and_grads(fn: Callable, args: Sequence[object], grad_out: Tensor) -> list[Tensor]:
    """[fn(*args), gradients of its differentiable inputs for grad_out]."""
    out = fn(*args)
    inputs = differentiable(args)
    grads = torch.autograd.grad(out, inputs, grad_out.to(out.device, out.dtype)) if inputs else ()
    return [out.detach(), *grads]


def assert_low_precision_matches_reference(op: Callable, reference: Callable,
                                           args: Sequence[object], device, dtype: torch.dtype
                                           ) -> None:
    """`op` on float64 `args` moved to `device` in `dtype`, output and gradients: in `dtype`,
    and within assert_low_precision_accuracy of the float64 reference, against the
    reference's own error computed there in `dtype`."""
    truth_out = reference(*args)
    grad_out = torch.randn_like(truth_out)
    truth = outputs_and_grads(reference, args, grad_out)
    low = on_device(args, device, dtype)
    got = outputs_and_grads(op, low, grad_out)
    baseline = outputs_and_grads(reference, low, grad_out)
    for g, base, want in zip(got, baseline, truth):
        assert g.dtype == dtype and g.device == base.device
        assert_low_precision_accuracy(g.cpu(), base.cpu(), want)


def leaf(t: Tensor, requires_grad: bool) -> Tensor:
    """`t` as a leaf tensor that keeps its strides (views stay views of the same storage)."""
    return t.detach().requires_grad_(requires_grad)


def on_device(args: Sequence[object], device, dtype: torch.dtype | None = None) -> list[object]:
    """`args` with every tensor copied to `device` (and `dtype`) keeping its exact strides and
    storage offset (permuted, sliced and expanded views stay such views), as leaves that
    require grad where the originals did."""
    def move(t: Tensor) -> Tensor:
        with torch.no_grad():
            extent = t.untyped_storage().nbytes() // t.element_size()
            storage = t.as_strided((extent,), (1,), 0).to(device=device, dtype=dtype or t.dtype)
            moved = storage.as_strided(t.shape, t.stride(), t.storage_offset())
        return leaf(moved, t.requires_grad)
    return [move(a) if isinstance(a, Tensor) else a for a in args]


def assert_matches_reference(op: Callable, reference: Callable, args: Sequence[object]) -> None:
    out, expected = op(*args), reference(*args)
    torch.testing.assert_close(out, expected, **TOLERANCES[out.dtype])
    inputs = differentiable(args)
    if inputs:
        grad_out = torch.randn_like(out)
        grads = torch.autograd.grad(out, inputs, grad_out)
        expected_grads = torch.autograd.grad(expected, inputs, grad_out)
        for got, want in zip(grads, expected_grads):
            torch.testing.assert_close(got, want, **TOLERANCES[out.dtype])


def with_replaced(
    valid: Sequence[object], changes: Sequence[tuple[str, int, object]]
) -> list[tuple[str, list[object]]]:
    """(argument, `valid` with `replacement` at `position`) for each (argument, position,
    replacement) of `changes`: bad inputs that spoil one argument of a valid call."""
    calls = []
    for argument, position, replacement in changes:
        args = list(valid)
        args[position] = replacement
        calls.append((argument, args))
    return calls


def bad_weight_and_bias(weight: Tensor, bias: Tensor) -> list[tuple[str, int, object]]:
    """The (argument, position, replacement) changes that spoil a valid call's fully connected
    (out, features) `weight` at position 1 and (out,) `bias` at position 2 (linear's and
    cross_scale_embed's): a column short, 1-D, float64, on another device; a row short,
    float64."""
    return [
        ("weight", 1, weight[:, :-1]),
        ("weight", 1, weight[0]),
        ("weight", 1, weight.double()),
        ("weight", 1, weight.to("meta")),
        ("bias", 2, bias[:-1]),
        ("bias", 2, bias.double()),
    ]


def assert_rejected(op: Callable, args: Sequence[object], op_name: str, argument: str) -> None:
    """The op raises RuntimeError whose message starts by naming `argument`."""
    with pytest.raises(RuntimeError) as error:
        op(*args)
    message = str(error.value)
    assert re.search(rf"mlpmix\.{op_name}: {argument}\b", message), message


def assert_rejected_by_every_kernel(
    op: Callable, args: Sequence[object], op_name: str, argument: str
) -> None:
    """assert_rejected on the CPU kernel and, unless the bad input is a device mismatch
    with a meta tensor, on the Meta kernel (torch.compile / export) with the same message."""
    assert_rejected(op, args, op_name, argument)
    if not any(isinstance(a, Tensor) and a.is_meta for a in args):
        meta = [a.to("meta") if isinstance(a, Tensor) else a for a in args]
        assert_rejected(op, meta, op_name, argument)


def assert_no_double_backward(op: Callable, args: Sequence[object], op_name: str) -> None:
    inputs = differentiable(args)
    grads = torch.autograd.grad(op(*args).sum(), inputs, create_graph=True)
    with pytest.raises(RuntimeError, match=rf"mlpmix\.{op_name}: double backward"):
        sum(g.sum() for g in grads).backward()


def gradcheck_sample(op, args, **kwargs) -> bool:
    """gradcheck of `op` on `args`. gradcheck perturbs memory, so it cannot take an input with
    stride 0: an expanded tensor is passed as its (1, ...) slice and expanded inside."""
    shapes = {}
    inputs = list(args)
    for i, a in enumerate(args):
        if isinstance(a, Tensor) and 0 in a.stride() and a.numel():
            index = tuple(slice(0, 1) if s == 0 else slice(None) for s in a.stride())
            inputs[i] = leaf(a[index].contiguous(), a.requires_grad)
            shapes[i] = a.shape

    def fn(*values):
        return op(*[v.expand(shapes[i]) if i in shapes else v for i, v in enumerate(values)])

    return torch.autograd.gradcheck(fn, inputs, **kwargs)


def assert_script_round_trip(module: nn.Module, x: Tensor) -> None:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)


def assert_compiles(module: nn.Module, x: Tensor) -> None:
    """torch.compile(fullgraph=True) gives the eager output and input gradient."""
    eager_x, compiled_x = leaf(x, True), leaf(x.clone(), True)
    expected = module(eager_x)
    out = torch.compile(module, fullgraph=True)(compiled_x)
    torch.testing.assert_close(out, expected, **TOLERANCES[x.dtype])
    grad_out = torch.randn_like(out)
    torch.testing.assert_close(
        torch.autograd.grad(out, compiled_x, grad_out)[0],
        torch.autograd.grad(expected, eager_x, grad_out)[0],
        **TOLERANCES[x.dtype],
    )


def assert_exports_with_dynamic_batch(module: nn.Module, x: Tensor, other_batch: Tensor) -> None:
    batch = torch.export.Dim("batch")
    exported = torch.export.export(module, (x,), dynamic_shapes=({0: batch},))
    for sample in (x, other_batch):
        torch.testing.assert_close(
            exported.module()(sample), module(sample), **TOLERANCES[x.dtype]
        )


def evaluate(fn, leaves, build, grad_out):
    out = fn(*build(leaves))
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype), allow_unused=True)
    return [out, *grads]


def check(op, ref, leaves, build, dtype):
    """`op` against `ref` on float64 leaves (`build` turns leaves into the op's arguments).

    float64 must agree to ~1e-12. float32 is judged as flash-attention does: the op's error
    against the float64 result at most twice the reference's own float32 error."""
    truth_out = ref(*build(leaves))
    grad_out = torch.randn_like(truth_out)
    truth = evaluate(ref, leaves, build, grad_out)
    if dtype == torch.float64:
        for got, want in zip(evaluate(op, leaves, build, grad_out), truth):
            if want is not None:
                torch.testing.assert_close(got, want, **TOLERANCES[torch.float64])
        return
    low = [leaf.detach().float().requires_grad_() for leaf in leaves]
    fused, reference_low = evaluate(op, low, build, grad_out), evaluate(ref, low, build, grad_out)
    for got, baseline, want in zip(fused, reference_low, truth):
        if want is not None:
            assert_low_precision_accuracy(got, baseline, want)
