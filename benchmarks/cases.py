"""The benchmark cases: each op at the shapes of the six models, and the models themselves.

A case has a label (op or model), a kind (forward, forward+backward, inference, training),
a sub-label (shape, dtype, device) and a ``build(impl)`` that returns the no-argument
callable to time. Every case has a unique ``name`` so that a fresh process (the memory
measurement) can rebuild it: ``<label>/<shape key>/<kind>`` for an op, ``<model>/<kind>``
for a model, with ``/batch<N>`` appended at a batch other than the device's default.

On CPU the cases' inputs and parameters are float32, at batch 8 by default; the
implementation decides the precision it runs them in (``implementations.PRECISIONS``:
float32, bfloat16 autocast, bfloat16 weights, int8), and the runtimes run a model's
inference from its exported file (``benchmarks/runtimes.py``). On CUDA the ops run in
float32 and the models at batch 64 under bfloat16 autocast, as they are trained on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

import mlpmix
from mlpmix import ops

from . import runtimes
from .implementations import prepare, runtime, weights_dtype

IMAGE = 224
DTYPE = torch.float32


def default_batch(device: str) -> int:
    return 64 if device == "cuda" else 8


@dataclass(frozen=True)
class Setting:
    """Where and how the cases run: on ``device``, at ``batch`` (None: the device's
    default)."""
    device: str = "cpu"
    batch_size: Optional[int] = None

    @property
    def batch(self) -> int:
        return self.batch_size or default_batch(self.device)

    def case_name(self, name: str) -> str:
        """A case's unique name at this batch."""
        return name if self.batch == default_batch(self.device) else f"{name}/batch{self.batch}"

    @property
    def model_autocast(self) -> Optional[torch.dtype]:
        return torch.bfloat16 if self.device == "cuda" else None

    def label(self, autocast: bool = False) -> str:
        dtype = "bf16 autocast" if autocast and self.model_autocast else "f32"
        return f"{dtype} {self.device}"


@dataclass
class Case:
    name: str
    label: str
    kind: str
    sub_label: str
    build: Callable[[str], Callable[[], object]] = field(repr=False)
    images: int = 0  # images per call, for images/s (models only)
    # The dtype of its matrix products before an implementation's precision (the CUDA
    # models': bfloat16, under autocast): which peak its fraction of peak is of.
    products: torch.dtype = torch.float32


def _shape_label(setting: Setting, shape: Sequence[int], extra: str = "",
                 autocast: bool = False) -> str:
    dims = "x".join(str(s) for s in shape)
    return f"({dims}){' ' + extra if extra else ''} {setting.label(autocast)}"


def _cast(value: object, dtype: Optional[torch.dtype]) -> object:
    """A floating-point tensor argument in ``dtype`` (a leaf still, requiring grad as before)."""
    if dtype is None or not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return value
    return value.detach().to(dtype).requires_grad_(value.requires_grad)


def _op_step(fn: Callable, args: List[object], backward: bool, impl: str) -> Callable[[], object]:
    run = prepare(fn, impl, device=args[0].device.type)  # autocast on the inputs' device
    args = [_cast(a, weights_dtype(impl)) for a in args]
    if not backward:
        def forward():
            with torch.no_grad():
                return run(*args)
        return forward
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]

    def forward_backward():
        out = run(*args)
        return torch.autograd.grad(out, inputs, torch.ones_like(out))
    return forward_backward


def _op_cases(setting: Setting, op: str, key: str, make_args: Callable[[bool], List[object]],
              static: dict, sub_label: str) -> List[Case]:
    fn = partial(getattr(ops, op), **static)
    cases = []
    for kind, backward in (("forward", False), ("forward+backward", True)):
        cases.append(Case(
            name=setting.case_name(f"{op}/{key}/{kind}"), label=op, kind=kind, sub_label=sub_label,
            build=lambda impl, backward=backward: _op_step(fn, make_args(backward), backward, impl),
        ))
    return cases


def _randn(setting: Setting, *shape: int, scale: float = 1.0, grad: bool = False) -> torch.Tensor:
    return (torch.randn(*shape, dtype=DTYPE, device=setting.device) * scale).requires_grad_(grad)


def dynamixer_cases(setting: Setting, key: str, resolution: int, dim: int, segments: int,
                    axis: int, reduced: int = 2) -> List[Case]:
    n, batch = resolution, setting.batch
    randn = partial(_randn, setting)

    def make_args(grad: bool) -> List[object]:
        torch.manual_seed(0)
        return [
            randn(batch, n, n, dim, grad=grad),
            randn(segments * reduced, dim, scale=0.05, grad=grad), randn(segments * reduced, grad=grad),
            randn(n * n, n * reduced, scale=0.05, grad=grad), randn(n * n, grad=grad),
        ]

    axis_name = "H" if axis == 1 else "W"
    return _op_cases(setting, "dynamixer", key, make_args, dict(num_segments=segments, dim=axis),
                     _shape_label(setting, (batch, n, n, dim), f"S={segments} d={reduced} along {axis_name}"))


def raft_cases(setting: Setting, key: str, resolution: int, channels: int, axis: int,
               raft: int = 2) -> List[Case]:
    features, batch = raft * resolution, setting.batch
    randn = partial(_randn, setting)

    def make_args(grad: bool) -> List[object]:
        torch.manual_seed(0)
        return [
            randn(batch, resolution, resolution, channels, grad=grad),
            randn(channels, grad=grad), randn(channels, grad=grad),
            randn(2 * features, features, scale=0.05, grad=grad), randn(2 * features, grad=grad),
            randn(features, 2 * features, scale=0.05, grad=grad), randn(features, grad=grad),
        ]

    axis_name = "H" if axis == 1 else "W"
    return _op_cases(setting, "raft_token_mixing", key, make_args, dict(raft_size=raft, dim=axis),
                     _shape_label(setting, (batch, resolution, resolution, channels),
                                  f"r={raft} along {axis_name}"))


def channel_cases(setting: Setting, key: str, resolution: int, channels: int,
                  hidden: int) -> List[Case]:
    """The channel MLP fc2(GELU(fc1(LayerNorm_C(x)))) of a RaftMLP level / DynaMixer stage."""
    batch = setting.batch
    randn = partial(_randn, setting)

    def make_args(grad: bool) -> List[object]:
        torch.manual_seed(0)
        return [
            randn(batch, resolution, resolution, channels, grad=grad),
            randn(channels, grad=grad), randn(channels, grad=grad),
            randn(hidden, channels, scale=channels ** -0.5, grad=grad), randn(hidden, grad=grad),
            randn(channels, hidden, scale=hidden ** -0.5, grad=grad), randn(channels, grad=grad),
        ]

    return _op_cases(setting, "channel_mlp", key, make_args, dict(eps=1e-5),
                     _shape_label(setting, (batch, resolution, resolution, channels),
                                  f"hidden={hidden}"))


def embed_cases(setting: Setting, key: str, in_channels: int, size: int, kernels: List[int],
                out_channels: int, image_input: bool) -> List[Case]:
    window, batch = in_channels * sum(k * k for k in kernels), setting.batch
    randn = partial(_randn, setting)

    def make_args(grad: bool) -> List[object]:
        torch.manual_seed(0)
        # The images entering level 1 need no gradient; deeper levels' inputs do.
        return [
            randn(batch, in_channels, size, size, grad=grad and not image_input),
            randn(out_channels, window, scale=window ** -0.5, grad=grad),
            randn(out_channels, grad=grad),
        ]

    return _op_cases(setting, "cross_scale_embed", key, make_args, dict(kernel_sizes=kernels),
                     _shape_label(setting, (batch, in_channels, size, size), f"k={kernels} -> {out_channels}"))


def linear_cases(setting: Setting, key: str, resolution: int, channels: int) -> List[Case]:
    """A DynaMixer block projection (``proj``, a branch's ``out``): Linear(D, D) per token."""
    batch = setting.batch
    randn = partial(_randn, setting)

    def make_args(grad: bool) -> List[object]:
        torch.manual_seed(0)
        return [
            randn(batch, resolution, resolution, channels, grad=grad),
            randn(channels, channels, scale=channels ** -0.5, grad=grad), randn(channels, grad=grad),
        ]

    return _op_cases(setting, "linear", key, make_args, {},
                     _shape_label(setting, (batch, resolution, resolution, channels),
                                  f"-> {channels}"))


def reweight_cases(setting: Setting, key: str, resolution: int, channels: int) -> List[Case]:
    """A DynaMixer block's branch re-weighting (``reweight``: Mlp(D, D/4, 3D)) at an unfolded
    stage, where it runs on the (B, H, W, D) branches."""
    batch, hidden = setting.batch, channels // 4
    randn = partial(_randn, setting)

    def make_args(grad: bool) -> List[object]:
        torch.manual_seed(0)
        branches = [randn(batch, resolution, resolution, channels, grad=grad) for _ in range(3)]
        return branches + [
            randn(hidden, channels, scale=channels ** -0.5, grad=grad), randn(hidden, grad=grad),
            randn(3 * channels, hidden, scale=hidden ** -0.5, grad=grad),
            randn(3 * channels, grad=grad),
        ]

    return _op_cases(setting, "reweight_branches", key, make_args, {},
                     _shape_label(setting, (batch, resolution, resolution, channels),
                                  f"hidden={hidden}"))


def op_cases(setting: Setting, quick: bool) -> List[Case]:
    cases = dynamixer_cases(setting, "dynamixer_s_stage_a_h", 32, 192, 8, axis=1)
    cases += raft_cases(setting, "raftmlp_s_level_1_h", 56, 64, axis=1)
    cases += channel_cases(setting, "raftmlp_s_level_1", 56, 64, 256)
    cases += embed_cases(setting, "raftmlp_s_level_1", 3, IMAGE, [4, 8], 64, image_input=True)
    if quick:
        return cases
    cases += dynamixer_cases(setting, "dynamixer_s_stage_a_w", 32, 192, 8, axis=2)
    cases += dynamixer_cases(setting, "dynamixer_s_stage_b_h", 16, 384, 16, axis=1)
    cases += dynamixer_cases(setting, "dynamixer_s_stage_b_w", 16, 384, 16, axis=2)
    cases += dynamixer_cases(setting, "dynamixer_l_stage_b_h", 16, 512, 16, axis=1, reduced=8)
    cases += raft_cases(setting, "raftmlp_s_level_1_w", 56, 64, axis=2)
    cases += raft_cases(setting, "raftmlp_s_level_2_h", 28, 128, axis=1)
    cases += raft_cases(setting, "raftmlp_s_level_3_w", 14, 256, axis=2)
    cases += channel_cases(setting, "raftmlp_s_level_3", 14, 256, 1024)
    cases += channel_cases(setting, "dynamixer_s_stage_a", 32, 192, 576)
    cases += channel_cases(setting, "dynamixer_s_stage_b", 16, 384, 1152)
    cases += linear_cases(setting, "dynamixer_s_stage_a_proj", 32, 192)
    cases += linear_cases(setting, "dynamixer_s_stage_b_proj", 16, 384)
    cases += reweight_cases(setting, "dynamixer_s_stage_b", 16, 384)
    cases += reweight_cases(setting, "dynamixer_m_stage_b", 16, 512)
    cases += embed_cases(setting, "raftmlp_s_level_2", 64, 56, [2, 4], 128, image_input=False)
    return cases


@lru_cache(maxsize=None)
def input_size(name: str) -> Tuple[int, ...]:
    """The (C, H, W) model ``name`` takes (3x224x224 for the six), from a model built on the
    meta device: no memory, no initialisation."""
    with torch.device("meta"):
        return tuple(mlpmix.create_model(name).pretrained_cfg["input_size"])


def _model_step(setting: Setting, name: str, training: bool, impl: str) -> Callable[[], object]:
    torch.manual_seed(0)
    weights = weights_dtype(impl)  # bf16 weights: the model and the images cast to it
    model = mlpmix.create_model(name).train(training).to(setting.device, weights or DTYPE)
    images = torch.randn(setting.batch, *input_size(name), dtype=DTYPE, device=setting.device)
    images = images.to(weights or DTYPE)
    autocast = torch.autocast(setting.device, setting.model_autocast,
                              enabled=setting.model_autocast is not None)
    if runtime(impl):
        if training:
            raise ValueError(f"{impl} runs a model's inference only, not {name}'s training step")
        return runtimes.step(name, model, images, impl)
    if not training:
        run = prepare(model, impl, setting.device)

        def inference():
            with torch.no_grad(), autocast:
                return run(images)
        return inference

    labels = torch.randint(0, 1000, (setting.batch,), device=setting.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    loss_of = prepare(lambda x, y: F.cross_entropy(model(x), y), impl, setting.device)

    def training_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_of(images, labels)
        loss.backward()
        optimizer.step()
        return loss
    return training_step


MODELS = ("raftmlp_s", "raftmlp_m", "raftmlp_l", "dynamixer_s", "dynamixer_m", "dynamixer_l")
QUICK_MODELS = ("raftmlp_s", "dynamixer_s")


def model_cases(setting: Setting, quick: bool) -> List[Case]:
    cases = []
    for name in QUICK_MODELS if quick else MODELS:
        for kind, training in (("inference", False), ("training", True)):
            cases.append(Case(
                name=setting.case_name(f"{name}/{kind}"), label=name, kind=kind,
                sub_label=_shape_label(setting, (setting.batch, *input_size(name)), autocast=True),
                build=lambda impl, name=name, training=training: _model_step(setting, name, training, impl),
                images=setting.batch, products=setting.model_autocast or DTYPE,
            ))
    return cases


def all_cases(quick: bool = False, device: str = "cpu", batch: Optional[int] = None) -> List[Case]:
    """Every case (``quick``: the S models and one shape per op) on ``device`` at ``batch``
    (None: the device's default)."""
    setting = Setting(device, batch)
    return op_cases(setting, quick) + model_cases(setting, quick)


def find(name: str, device: str = "cpu", batch: Optional[int] = None) -> Case:
    for case in all_cases(device=device, batch=batch):
        if case.name == name:
            return case
    raise KeyError(f"no benchmark case named {name!r} at batch {batch or default_batch(device)}")
