"""FlopCounterMode sees through the mlpmix ops (mlpmix.flops): every op, its forward that keeps
tensors and its backward count what FlopCounterMode counts for the op's reference on the op
table's samples, and the six models count their published MACs."""

from __future__ import annotations

from typing import Callable, Sequence

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mlpmix
from mlpmix.flops import count_macs
from mlpmix.nn import DynaMixerBlock
from op_testing import differentiable
from test_ops import CASES, by_name

#: The papers' MACs at 224x224 (spec tables 1.3 and 2.3).
PUBLISHED_MACS = {
    "raftmlp_s": 2.087e9, "raftmlp_m": 4.267e9, "raftmlp_l": 6.544e9,
    "dynamixer_s": 7.30e9, "dynamixer_m": 16.98e9, "dynamixer_l": 27.34e9,
}


def counted_flops(run: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def backward_flops(fn: Callable, args: Sequence[object]) -> int:
    """The FLOPs of the backward of ``fn(*args)`` to every argument that requires grad."""
    out = fn(*args)
    return counted_flops(lambda: torch.autograd.grad(out, differentiable(args),
                                                     torch.ones_like(out)))


@pytest.mark.parametrize("requires_grad", [False, True], ids=["op", "op-under-autograd"])
@by_name(CASES)
def test_forward_counts_what_the_reference_counts(case, requires_grad):
    """Under autograd the ops with kept tensors run their internal ``_<op>_forward``."""
    counts = [(counted_flops(lambda: case.op(*args)), counted_flops(lambda: case.reference(*args)))
              for args in case.samples(torch.float32, requires_grad)]
    assert [fused for fused, _ in counts] == [reference for _, reference in counts]
    assert any(reference for _, reference in counts)


@by_name(CASES)
def test_backward_counts_what_the_references_backward_counts(case):
    counts = [(backward_flops(case.op, args), backward_flops(case.reference, args))
              for args in case.samples(torch.float32, requires_grad=True)]
    assert [fused for fused, _ in counts] == [reference for _, reference in counts]
    assert any(reference for _, reference in counts)


def test_cross_scale_embed_backward_without_the_images_gradient_counts_the_weights_only():
    """The first level's images need no gradient: the backward then makes (and counts) only
    the weight's, as the reference's backward does."""
    case = next(case for case in CASES if case.name == "cross_scale_embed")
    for args in case.samples(torch.float32, requires_grad=True):
        frozen = [args[0].detach(), *args[1:]]
        assert backward_flops(case.op, frozen) == backward_flops(case.reference, frozen)
        assert 2 * backward_flops(case.op, frozen) == backward_flops(case.op, args)


def folded_extra_macs(model: torch.nn.Module) -> int:
    """What the fused DynaMixer computes beyond the reference: each folded block projects its
    three branches' token means (three D x D products per image) before scaling the
    projections (docs/models.md, "Counting FLOPs")."""
    return sum(3 * block.proj.in_features ** 2 for block in model.modules()
               if isinstance(block, DynaMixerBlock) and block.folded)


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_models_count_their_published_macs(name):
    with torch.device("meta"):
        model = mlpmix.create_model(name)
    fused = count_macs(model)
    with mlpmix.implementation.use("reference"):
        reference = count_macs(model)
    assert fused == pytest.approx(PUBLISHED_MACS[name], rel=0.03)
    assert fused - reference == folded_extra_macs(model)


def test_count_macs_leaves_the_model_as_it_is_and_scales_with_the_batch():
    model = mlpmix.create_model("dynamixer_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    macs = count_macs(model)
    assert macs > 0 and count_macs(model, batch=3) == 3 * macs
    assert count_macs(model, model.pretrained_cfg["input_size"]) == macs
    for key, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[key]), key


def test_count_macs_needs_an_input_size_for_a_plain_module():
    with pytest.raises(ValueError, match="input_size is required"):
        count_macs(torch.nn.Linear(4, 2))
    assert count_macs(torch.nn.Linear(4, 2), (5, 4), batch=2) == 2 * 5 * 4 * 2
