"""The six published models (and the tiny demo ones): sizes, surface, fused = reference,
DropPath, TorchScript and torch.compile."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import mlpmix

PUBLISHED = {
    "raftmlp_s": 9_868_768, "raftmlp_m": 21_413_632, "raftmlp_l": 36_184_672,
    "dynamixer_s": 26_265_960, "dynamixer_m": 57_128_264, "dynamixer_l": 97_818_088,
}
TINY = ["raftmlp_tiny", "dynamixer_tiny"]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_list_models():
    assert set(PUBLISHED) | set(TINY) == set(mlpmix.list_models())


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_count_equals_spec(name):
    with torch.device("meta"):
        model = mlpmix.create_model(name)
    assert n_params(model) == PUBLISHED[name]


@pytest.mark.parametrize("name", PUBLISHED)
def test_forward_at_224(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=7).eval()
    with torch.inference_mode():
        features = model.forward_features(torch.randn(1, 3, 224, 224))
        logits = model.forward_head(features)
        pooled = model.forward_head(features, pre_logits=True)
    assert features.shape == (1, 7, 7, model.num_features) if name.startswith("raft") else (1, 16, 16, model.num_features)
    assert logits.shape == (1, 7) and pooled.shape == (1, model.num_features)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["raftmlp_tiny", "dynamixer_tiny", "dynamixer_s"])
def test_layers_get_contiguous_tokens(name):
    """A permuted view entering the layers would make every LayerNorm copy it and every
    residual add run strided."""
    model = mlpmix.create_model(name).eval()
    layers = [m for m in model.modules() if type(m).__name__ in ("DynaMixerLayer", "RaftBlock")]
    inputs = []
    for layer in layers:
        layer.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    size = 224 if name.endswith("_s") else 8
    with torch.inference_mode():
        model(torch.randn(1, 3, size, size))
    assert len(inputs) == len(layers) > 0
    assert all(x.is_contiguous() for x in inputs)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="dynamixer_s"):
        mlpmix.create_model("dynamixer_xl")


def test_init_follows_spec():
    model = mlpmix.create_model("dynamixer_tiny")
    linear = model.stages[0].layers[0].mlp.fc1
    assert linear.bias.abs().max() == 0
    assert 0.018 < linear.weight.std() < 0.022  # trunc_normal_(std=0.02), cut at +-2 as timm
    assert torch.equal(model.norm.weight, torch.ones_like(model.norm.weight))


@pytest.mark.parametrize("name", TINY)
def test_reset_classifier(name):
    model = mlpmix.create_model(name, num_classes=10, in_chans=1)
    model.reset_classifier(4)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)
    model.reset_classifier(0)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, model.num_features)


def _fused_vs_reference(model, x):
    params = list(model.parameters())
    out = model(x)
    grads = torch.autograd.grad(out.square().sum(), params)
    with mlpmix.implementation.use("reference"):
        ref_out = model(x)
        ref_grads = torch.autograd.grad(ref_out.square().sum(), params)
    assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", TINY)
def test_fused_equals_reference_tiny(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1).double()
    _fused_vs_reference(model, torch.randn(3, 1, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("name", ["raftmlp_s", "dynamixer_s"])
def test_fused_equals_reference_published(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10).double()
    _fused_vs_reference(model, torch.randn(1, 3, 224, 224, dtype=torch.float64))


def test_implementation_switch():
    assert mlpmix.implementation.current() == "fused"
    with mlpmix.implementation.use("reference"):
        assert mlpmix.implementation.current() == "reference"
    assert mlpmix.implementation.current() == "fused"
    with pytest.raises(ValueError, match="fused"):
        with mlpmix.implementation.use("fast"):
            pass


def test_implementation_switch_from_environment():
    import subprocess, sys

    code = "import mlpmix; print(mlpmix.implementation.current())"
    out = subprocess.run([sys.executable, "-c", code], env={"MLPMIX_IMPL": "reference"},
                         capture_output=True, text=True)
    assert out.stdout.strip() == "reference", out.stderr


@pytest.mark.parametrize("name", TINY)
def test_drop_path_trains_and_evaluates(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1, drop_path_rate=0.5)
    plain = mlpmix.create_model(name, num_classes=10, in_chans=1)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(8, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))  # stochastic depth is on
    model.eval(), plain.eval()
    assert torch.equal(model(x), plain(x))


@pytest.mark.parametrize("name", list(PUBLISHED) + TINY)
def test_scripts(name, tmp_path):
    model = mlpmix.create_model(name).eval()
    scripted = torch.jit.script(model)
    if name in TINY:
        scripted.save(str(tmp_path / "m.pt"))
        x = torch.randn(2, 3, 8, 8)
        with torch.inference_mode():
            assert torch.equal(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x))


@pytest.mark.parametrize("name", TINY)
def test_compiled_training_step(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name, num_classes=10, in_chans=1)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))

    def step(m):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        return loss, torch.autograd.grad(loss, list(model.parameters()))

    compiled = torch.compile(model, fullgraph=True)
    loss, grads = step(compiled)
    ref_loss, ref_grads = step(model)
    assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, rtol=1e-4, atol=1e-5)
