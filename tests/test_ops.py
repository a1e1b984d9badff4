"""The checks that every op of mlpmix.ops passes, once, over a table of the ops (in the style of
pytorch/extension-cpp's tests): each row (an OpCase) names the op and gives its sample inputs,
its bad inputs and its gradcheck and opcheck settings. tests/test_ops_<op>.py defines the
op's samples and holds what is specific to that op; tests/test_cuda.py runs the same table's
samples on a GPU.

Each op is checked against mlpmix.reference (values and gradients, float64 and float32), by
gradcheck and torch.library.opcheck, against its Meta kernels (output and gradient shapes and
strides), for a clear error on double backward and on each bad input (from every kernel:
CPU and Meta, forward and backward), and through TorchScript, torch.compile and torch.export.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import pytest
import torch
from torch import Tensor, nn

import test_ops_channel_mlp
import test_ops_cross_scale_embed
import test_ops_dynamixer
import test_ops_linear
import test_ops_raft_token_mixing
import test_ops_reweight_branches
from mlpmix import ops, reference
from op_testing import (
    TOLERANCES,
    assert_compiles,
    assert_exports_with_dynamic_batch,
    assert_low_precision_matches_reference,
    assert_matches_reference,
    assert_no_double_backward,
    assert_rejected,
    assert_rejected_by_every_kernel,
    assert_script_round_trip,
    gradcheck_sample,
    on_device,
)

DEVICE = "cpu"  # tests/test_cuda.py runs the table's samples on "cuda"
DTYPES = [torch.float64, torch.float32]
REDUCED_DTYPES = [torch.bfloat16, torch.float16]
OPCHECK_TEST_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor",
                      "test_aot_dispatch_dynamic")  # torch.library.opcheck's default: all


@dataclass(frozen=True, eq=False)
class OpCase:
    """One op: mlpmix.ops.<name> (torch.ops.mlpmix.<name>, with <name>_backward), its reference
    mlpmix.reference.<name>, and what the generic tests need to run it."""

    name: str
    # (dtype, requires_grad=False, device="cpu") -> argument lists: the op's strides, ranks and
    # empty shapes, on `device` (tensors made on the CPU, then moved keeping their strides)
    sample_inputs: Callable[..., Iterator[list]]
    valid_args: Callable[[], list]  # a small valid float32 call
    bad_inputs: Callable[[], list[tuple[str, list]]]  # (argument named in the error, call)
    bad_grad_outs: dict[str, Tensor]  # each rejected by <name>_backward on valid_args()
    output_shape: Callable[[Sequence], tuple[int, ...]] = lambda args: tuple(args[0].shape)
    channels_last_grads: tuple[int, ...] = ()  # arguments whose gradient is channels-last
    gradcheck_fast_mode: bool = True
    gradcheck_skips_empty: bool = False  # samples whose first argument has no elements
    opcheck_dtype: torch.dtype = torch.float64
    opcheck_test_utils: tuple[str, ...] = OPCHECK_TEST_UTILS
    # the op that returns, after the output, the tensors it keeps for <name>_backward (whose
    # optional arguments of these names take them); with the ways to spoil each one
    forward_saving: Optional[str] = None
    saved: tuple[str, ...] = ()
    bad_saved: Sequence[tuple[str, str, Callable[[Tensor], Tensor]]] = ()
    # a module holding the op's parameters, and its input, for TorchScript, torch.compile and
    # torch.export; each variant is a tuple of arguments for it
    module_and_input: Optional[Callable[..., tuple[nn.Module, Tensor]]] = None
    script_variants: tuple[tuple, ...] = ((),)
    export_variants: tuple[tuple, ...] = ((),)

    @property
    def op(self) -> Callable:
        return getattr(ops, self.name)

    @property
    def reference(self) -> Callable:
        return getattr(reference, self.name)

    @property
    def backward(self):
        return getattr(torch.ops.mlpmix, f"{self.name}_backward")

    @property
    def saving_op(self):
        return getattr(torch.ops.mlpmix, self.forward_saving)

    def samples(self, dtype: torch.dtype, requires_grad: bool = False) -> Iterator[list]:
        return self.sample_inputs(dtype, requires_grad, device=DEVICE)

    def backward_args(self, args: Sequence) -> list:
        """`args` with the op's defaulted arguments that the backward requires (raft's eps)."""
        schema = getattr(torch.ops.mlpmix, self.name).default._schema
        return [*args, *(a.default_value for a in schema.arguments[len(args):])]


def _op_case(module, **settings) -> OpCase:
    """The row of the op of tests/test_ops_<name>.py, from the samples, bad inputs and module
    that it defines (sample_inputs, valid_args, bad_inputs, BAD_GRAD_OUTS and, where the op
    has them, BAD_SAVED and module_and_input), with the row's `settings`."""
    return OpCase(
        name=module.__name__.removeprefix("test_ops_"),
        sample_inputs=module.sample_inputs,
        valid_args=module.valid_args,
        bad_inputs=module.bad_inputs,
        bad_grad_outs=module.BAD_GRAD_OUTS,
        bad_saved=getattr(module, "BAD_SAVED", ()),
        module_and_input=getattr(module, "module_and_input", None),
        **settings,
    )


CASES = [
    _op_case(test_ops_dynamixer,
             gradcheck_fast_mode=False, gradcheck_skips_empty=True,
             opcheck_dtype=torch.float32,
             forward_saving="_dynamixer_forward", saved=("compressed", "weights")),
    _op_case(test_ops_raft_token_mixing,
             forward_saving="_raft_token_mixing_forward", saved=("hidden",),
             export_variants=((1,), (2,))),  # dim
    _op_case(test_ops_channel_mlp,
             forward_saving="_channel_mlp_forward", saved=("hidden",),
             script_variants=(((2, 3, 4, 6),), ((2, 5, 6),)),  # shape
             export_variants=(((2, 3, 4, 6),), ((3, 5, 6),))),
    _op_case(test_ops_cross_scale_embed,
             output_shape=test_ops_cross_scale_embed.output_shape,
             channels_last_grads=(0,)),
    _op_case(test_ops_linear, output_shape=test_ops_linear.output_shape),
    _op_case(test_ops_reweight_branches),
]
SAVING = [case for case in CASES if case.forward_saving]
WITH_MODULE = [case for case in CASES if case.module_and_input]


def by_name(cases: Sequence[OpCase]):
    return pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])


each_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])


def module_variants(field: str) -> list:
    """(case, variant) for each variant of module_and_input's arguments in the row's `field`."""
    def name(value) -> str:
        return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return [pytest.param(case, variant, id="-".join([case.name, *map(name, variant)]))
            for case in WITH_MODULE for variant in getattr(case, field)]


def test_the_table_covers_every_op():
    assert sorted(case.name for case in CASES) == sorted(ops.__all__)


@each_dtype
@by_name(CASES)
def test_matches_reference_and_its_gradients(case, dtype):
    torch.manual_seed(0)
    for args in case.samples(dtype, requires_grad=True):
        assert_matches_reference(case.op, case.reference, args)


@each_dtype
@by_name(CASES)
def test_output_and_gradients_are_contiguous_with_the_meta_kernels_shapes(case, dtype):
    """The output (of the op's shape and dtype) is contiguous, and each gradient that the
    backward op returns is shaped like its input and contiguous (channels-last where the row
    says): with the shapes and (but for empty tensors) strides of the Meta kernels, which
    torch.compile and torch.export trace with."""
    for i, args in enumerate(case.samples(dtype)):
        meta_args = on_device(args, "meta")
        out, meta_out = case.op(*args), case.op(*meta_args)
        assert out.shape == case.output_shape(args) == meta_out.shape, i
        assert out.dtype == dtype == meta_out.dtype and out.is_contiguous(), i
        assert out.stride() == meta_out.stride() or not out.numel(), i
        grad_out = torch.ones_like(out)
        grads = case.backward(grad_out, *case.backward_args(args))
        meta_grads = case.backward(grad_out.to("meta"), *case.backward_args(meta_args))
        for position, (grad, meta_grad, arg) in enumerate(zip(grads, meta_grads, args)):
            assert grad.shape == meta_grad.shape, (i, position)
            assert grad.stride() == meta_grad.stride() or not grad.numel(), (i, position)
            if isinstance(arg, Tensor):
                layout = (torch.channels_last if position in case.channels_last_grads
                          else torch.contiguous_format)
                assert grad.shape == arg.shape, (i, position)
                assert grad.is_contiguous(memory_format=layout), (i, position)


@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=["bfloat16", "float16"])
@by_name(CASES)
def test_reduced_precision_error_is_at_most_twice_the_references(case, dtype):
    """bfloat16 and float16, output and gradients, every sample's strides: within twice the
    error of the reference's own computation in that dtype (flash-attention's rule)."""
    torch.manual_seed(1)
    for args in case.samples(torch.float64, requires_grad=True):
        assert_low_precision_matches_reference(case.op, case.reference, args, DEVICE, dtype)


@pytest.mark.parametrize("dtype", REDUCED_DTYPES, ids=["bfloat16", "float16"])
@by_name(CASES)
def test_autocast_runs_the_op_in_its_dtype_with_float32_gradients(case, dtype):
    """Under torch.autocast the op casts its float32 arguments (as a matmul does), computes
    and returns the autocast dtype, and its gradients reach the float32 leaves in float32."""
    args = [a.detach().requires_grad_() if isinstance(a, Tensor) else a
            for a in case.valid_args()]
    with torch.autocast(DEVICE, dtype=dtype):
        out = case.op(*args)
    assert out.dtype == dtype
    torch.testing.assert_close(out, case.op(*on_device(args, DEVICE, dtype)), rtol=0, atol=0)
    out.float().square().sum().backward()
    for a in args:
        if isinstance(a, Tensor):
            assert a.grad is not None and a.grad.dtype == torch.float32


@by_name(CASES)
def test_gradcheck(case):
    torch.manual_seed(0)
    for i, args in enumerate(case.samples(torch.float64, requires_grad=True)):
        if case.gradcheck_skips_empty and not args[0].numel():
            continue
        assert gradcheck_sample(case.op, args, fast_mode=case.gradcheck_fast_mode), i


@pytest.mark.parametrize("requires_grad", [False, True])
@by_name(CASES)
def test_opcheck(case, requires_grad):
    torch.manual_seed(0)
    for args in case.samples(case.opcheck_dtype, requires_grad):
        torch.library.opcheck(getattr(torch.ops.mlpmix, case.name).default, args,
                              test_utils=case.opcheck_test_utils)


@by_name(CASES)
def test_double_backward_raises(case):
    args = next(iter(case.samples(torch.float64, requires_grad=True)))
    assert_no_double_backward(case.op, args, case.name)


BAD_INPUTS = [
    pytest.param(case, argument, args, id=f"{case.name}-{argument}-{i}")
    for case in CASES for i, (argument, args) in enumerate(case.bad_inputs())
]


@pytest.mark.parametrize("case, argument, args", BAD_INPUTS)
def test_bad_input_is_rejected_naming_it(case, argument, args):
    """By the op and by the ops behind it (the backward given a grad_out of the valid call's
    output), on the CPU and Meta kernels."""
    assert_rejected_by_every_kernel(case.op, args, case.name, argument)
    args = case.backward_args(args)
    if case.forward_saving:
        assert_rejected_by_every_kernel(case.saving_op, args, case.forward_saving, argument)
    grad_out = torch.zeros_like(case.op(*case.valid_args()))
    assert_rejected_by_every_kernel(case.backward, [grad_out, *args], f"{case.name}_backward",
                                    argument)


@pytest.mark.parametrize("case, grad_out", [
    pytest.param(case, grad_out, id=f"{case.name}-{bad}")
    for case in CASES for bad, grad_out in case.bad_grad_outs.items()
])
def test_backward_rejects_bad_grad_out(case, grad_out):
    args = case.backward_args(case.valid_args())
    assert_rejected(case.backward, (grad_out, *args), f"{case.name}_backward", "grad_out")


@each_dtype
@pytest.mark.parametrize("case, given", [
    pytest.param(case, given, id=f"{case.name}-{'+'.join(given)}")
    for case in SAVING
    for count in range(1, len(case.saved) + 1)
    for given in itertools.combinations(case.saved, count)
])
def test_backward_from_the_saved_tensors_equals_recomputing_them(case, given, dtype):
    torch.manual_seed(0)
    for args in case.samples(dtype):
        out, *saved = case.saving_op(*args)
        kept = {name: t for name, t in zip(case.saved, saved) if name in given}
        grad_out = torch.randn_like(out)
        args = case.backward_args(args)
        for got, want in zip(case.backward(grad_out, *args, **kept),
                             case.backward(grad_out, *args)):
            torch.testing.assert_close(got, want, **TOLERANCES[dtype])


@by_name(SAVING)
def test_opcheck_forward_saving_tensors_and_backward(case):
    """The forward that keeps tensors, and the backward with and without them."""
    torch.manual_seed(0)
    backward = case.backward.default
    for args in case.samples(torch.float64):
        torch.library.opcheck(case.saving_op.default, args, test_utils=case.opcheck_test_utils)
        out, *saved = case.saving_op(*args)
        grad_out = torch.randn_like(out)
        args = case.backward_args(args)
        torch.library.opcheck(backward, (grad_out, *args, *saved),
                              test_utils=case.opcheck_test_utils)
        torch.library.opcheck(backward, (grad_out, *args), test_utils=case.opcheck_test_utils)


@pytest.mark.parametrize("case, name, spoil", [
    pytest.param(case, name, spoil, id=f"{case.name}-{name}-{bad}")
    for case in SAVING for name, bad, spoil in case.bad_saved
])
def test_backward_rejects_bad_saved_tensor(case, name, spoil):
    args = case.valid_args()
    out, *saved = case.saving_op(*args)
    kept = dict(zip(case.saved, saved))
    kept[name] = spoil(kept[name])
    call = [torch.zeros_like(out), *case.backward_args(args), *kept.values()]
    assert_rejected_by_every_kernel(case.backward, call, f"{case.name}_backward", name)


@pytest.mark.parametrize("case, variant", module_variants("script_variants"))
def test_script_round_trip(case, variant):
    assert_script_round_trip(*case.module_and_input(*variant))


@by_name(WITH_MODULE)
def test_torch_compile_fullgraph(case):
    assert_compiles(*case.module_and_input())


@pytest.mark.parametrize("case, variant", module_variants("export_variants"))
def test_export_with_dynamic_batch(case, variant):
    module, x = case.module_and_input(*variant)
    assert_exports_with_dynamic_batch(module, x, torch.randn(5, *x.shape[1:]))
