"""Small layers shared by the model families."""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from .. import implementation, ops


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and init) on :func:`mlpmix.ops.linear`:
    the models' activation-sized projections, whose matrix products the CPU op runs through
    oneDNN for float32 on AVX-512 CPUs other than Intel's (on the AMD EPYC machines of
    ``benchmarks/results``, 15-45% faster than ATen's MKL path that ``nn.Linear`` takes
    there) and through ATen's MKL on Intel's, where MKL is the faster."""

    def forward(self, x: Tensor) -> Tensor:
        return ops.linear(x, self.weight, self.bias)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` over the last axis (exact, erf-form GELU)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: Optional[int] = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ChannelMlp(Mlp):
    """The channel-mixing branch of both families, ``fc2(GELU(fc1(LayerNorm(x))))`` over the
    last axis, as one fused op (:func:`mlpmix.ops.channel_mlp`).

    It owns ``fc1`` and ``fc2`` (an :class:`Mlp`'s parameters and state-dict keys); the
    LayerNorm stays the caller's module (RaftMLP's ``norm_c``, DynaMixer's ``norm2``), whose
    parameters ``forward`` takes, so both checkpoint layouts are unchanged. That LayerNorm's
    forward hooks do not fire."""

    def forward(self, x: Tensor, norm_weight: Tensor, norm_bias: Tensor,
                eps: float = 1e-5) -> Tensor:
        return ops.channel_mlp(x, norm_weight, norm_bias, self.fc1.weight, self.fc1.bias,
                               self.fc2.weight, self.fc2.bias, eps)


class DropPath(nn.Module):
    """Stochastic depth: zeroes a whole sample's branch with probability ``p`` while training
    and rescales the kept ones by ``1 / (1 - p)``; the identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask_shape: List[int] = [x.shape[0]] + [1] * (x.dim() - 1)
        mask = x.new_empty(mask_shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def add_residual(x: Tensor, branch: Tensor) -> Tensor:
    """``x + branch``, where ``branch`` is a tensor the caller has just computed and holds
    no other reference to (a block's branch output, after its DropPath).

    The fused implementation adds into ``branch`` in place when the two match in shape and
    dtype: no fresh activation-sized tensor per residual (in a profiled DynaMixer-S training
    step on CPU, an out-of-place add of a 3 MiB activation took about 1.2 ms, in place
    0.13 ms). The result is bit-identical, as addition is commutative; autograd is
    unaffected, since none of the ops that end a block's branch keeps its output for the
    backward.
    ``mlpmix.implementation.use("reference")`` runs ``x + branch`` as the authors wrote it."""
    fused = torch.jit.is_scripting() or not implementation.use_reference()
    if fused and branch.dtype == x.dtype and branch.shape == x.shape:
        return branch.add_(x)
    return x + branch
