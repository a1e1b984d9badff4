"""The timm-style surface beyond classification: ``pretrained_cfg``, ``feature_info``,
``forward_intermediates``, ``features_only`` backbones and the model-level input check.

Full-size models run at 224 only for the S models; the others are checked on the meta
device (the input check and every op's shape run there without computing)."""

from __future__ import annotations

import copy

import pytest
import torch

import mlpmix
from mlpmix.models import DYNAMIXER_CONFIGS, RAFTMLP_CONFIGS

PUBLISHED = ["raftmlp_s", "raftmlp_m", "raftmlp_l", "dynamixer_s", "dynamixer_m", "dynamixer_l"]
TINY = ["raftmlp_tiny", "dynamixer_tiny"]
ALL = PUBLISHED + TINY
CONFIGS = {**RAFTMLP_CONFIGS, **DYNAMIXER_CONFIGS}
REDUCTIONS = {
    "raftmlp_s": [4, 8, 16, 32], "raftmlp_m": [4, 8, 16, 32], "raftmlp_l": [4, 8, 16, 32],
    "dynamixer_s": [7, 14], "dynamixer_m": [7, 14], "dynamixer_l": [7, 14],
    "raftmlp_tiny": [1, 2], "dynamixer_tiny": [1, 2],
}
CFG_KEYS = {"architecture", "input_size", "mean", "std", "crop_pct", "interpolation",
            "num_classes", "first_conv", "classifier"}


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return mlpmix.create_model(name, **kwargs).eval()


# pretrained_cfg


@pytest.mark.parametrize("name", ALL)
def test_pretrained_cfg_describes_the_model(name):
    model = meta_model(name, num_classes=7)
    cfg = model.pretrained_cfg
    assert CFG_KEYS <= set(cfg) and model.default_cfg is cfg
    size = CONFIGS[name].img_size
    assert cfg["architecture"] == name
    assert cfg["input_size"] == (3, size, size)
    assert cfg["num_classes"] == model.num_classes == 7
    assert len(cfg["mean"]) == len(cfg["std"]) == 3
    first = model.get_submodule(cfg["first_conv"])
    assert first.weight is model.state_dict(keep_vars=True)[f"{cfg['first_conv']}.weight"]
    assert model.get_submodule(cfg["classifier"]) is model.head


def test_pretrained_cfg_values_follow_the_authors():
    crop = {"dynamixer_s": 0.9, "dynamixer_m": 0.9, "dynamixer_l": 0.875,
            "raftmlp_s": 0.875, "raftmlp_m": 0.875, "raftmlp_l": 0.875}
    for name in PUBLISHED:
        cfg = meta_model(name).pretrained_cfg
        assert cfg["crop_pct"] == crop[name]
        assert cfg["interpolation"] == ("bicubic" if name.startswith("dynamixer") else "bilinear")
        assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
        assert cfg["first_conv"] == ("stem" if name.startswith("dynamixer")
                                     else "levels.0.embed.proj")


@pytest.mark.parametrize("name", ["raftmlp_s", "dynamixer_tiny"])
def test_pretrained_cfg_follows_build_arguments(name):
    model = meta_model(name, in_chans=1, img_size=32 if name.endswith("tiny") else 256)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, model.img_size, model.img_size)
    assert len(cfg["mean"]) in (1, 3)  # ImageNet statistics stay as published
    model.reset_classifier(5)
    assert cfg["num_classes"] == 5


# feature_info and forward_intermediates


@pytest.mark.parametrize("name", ALL)
def test_feature_info_and_intermediate_shapes(name):
    model = meta_model(name)
    info = model.feature_info
    size = CONFIGS[name].img_size
    assert info.channels() == list(CONFIGS[name].dims)
    assert info.reduction() == REDUCTIONS[name]
    for entry in info:
        assert set(entry) == {"num_chs", "reduction", "module"}
        model.get_submodule(entry["module"])
    intermediates = model.forward_intermediates(torch.empty(2, 3, size, size, device="meta"),
                                                intermediates_only=True)
    assert [tuple(t.shape) for t in intermediates] == [
        (2, c, -(-size // r), -(-size // r)) for c, r in zip(info.channels(), info.reduction())]


@pytest.fixture(scope="module", params=["raftmlp_s", "dynamixer_s"])
def s_model_run(request):
    """One S model at 224 with its forward_intermediates and forward_tokens outputs."""
    torch.manual_seed(0)
    model = mlpmix.create_model(request.param).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        final, intermediates = model.forward_intermediates(x)
        tokens = model.forward_tokens(x)
        normed = model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)
    return model, x, final, intermediates, tokens, normed


def test_intermediates_match_the_head_path(s_model_run):
    model, _, final, intermediates, tokens, normed = s_model_run
    assert len(intermediates) == model.num_stages
    for t, info in zip(intermediates, model.feature_info):
        assert t.shape == (2, info["num_chs"], 224 // info["reduction"], 224 // info["reduction"])
    assert torch.equal(intermediates[-1], tokens.permute(0, 3, 1, 2))
    with torch.inference_mode():
        assert torch.equal(final, model.norm(tokens))
        assert torch.equal(normed[0], model.norm(tokens).permute(0, 3, 1, 2))
        assert torch.equal(model.forward_head(final), model.forward_head(model.norm(tokens)))


def tiny_model_and_input(name):
    """The tiny model `name` in eval mode and a batch of two 8x8 images, seeded."""
    torch.manual_seed(0)
    return mlpmix.create_model(name).eval(), torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize("name", TINY)
def test_intermediate_indices(name):
    model, x = tiny_model_and_input(name)
    with torch.inference_mode():
        final, every = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        for indices, expected in [(1, [1]), (2, [0, 1]), ([0], [0]), ([-1], [1]),
                                  ((1, -2), [0, 1]), ([-2, -1], [0, 1])]:
            _, taken = model.forward_intermediates(x, indices=indices)
            assert len(taken) == len(expected)
            assert all(torch.equal(t, every[i]) for t, i in zip(taken, expected))
        early, first = model.forward_intermediates(x, indices=[0], stop_early=True)
        assert torch.equal(early, every[0].permute(0, 2, 3, 1))
        only = model.forward_intermediates(x, indices=[0], intermediates_only=True)
        assert isinstance(only, list) and torch.equal(only[0], first[0])
        nhwc = model.forward_intermediates(x, output_fmt="NHWC", intermediates_only=True)
        assert torch.equal(nhwc[1], every[1].permute(0, 2, 3, 1))
    for bad in (0, 3, [2], [-3]):
        with pytest.raises(ValueError, match="stage"):
            model.forward_intermediates(x, indices=bad)
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(x, output_fmt="NCL")


# features_only backbones


@pytest.mark.parametrize("name", TINY)
def test_features_only_backbone(name):
    model, x = tiny_model_and_input(name)
    with torch.inference_mode():
        every = model.forward_intermediates(x, intermediates_only=True)
    for out_indices, expected in [(None, [0, 1]), ((1,), [1]), (1, [1]), ([0], [0])]:
        backbone = copy.deepcopy(model)
        features = mlpmix.models.FeatureExtractor(backbone, out_indices).eval()
        with torch.inference_mode():
            maps = features(x)
        assert len(maps) == len(expected)
        assert all(torch.equal(m, every[i]) for m, i in zip(maps, expected))
        assert features.feature_info.channels() == [model.feature_info[i]["num_chs"] for i in expected]
        assert features.feature_info.reduction() == [model.feature_info[i]["reduction"] for i in expected]
        assert features.feature_info.module_name() == [model.feature_info[i]["module"] for i in expected]
        # the head, the final norm and the stages after the last one taken are pruned
        assert isinstance(features.model.head, torch.nn.Identity)
        assert isinstance(features.model.norm, torch.nn.Identity)
        assert features.model.num_stages == max(expected) + 1


@pytest.mark.parametrize("name", ALL)
def test_create_model_features_only(name):
    with torch.device("meta"):
        features = mlpmix.create_model(name, features_only=True, out_indices=(-2, -1))
        size = CONFIGS[name].img_size
        maps = features(torch.empty(1, 3, size, size))
    assert [m.shape[1] for m in maps] == features.feature_info.channels()
    assert [size // m.shape[-1] for m in maps] == features.feature_info.reduction()
    assert features.feature_info.reduction() == REDUCTIONS[name][-2:]


@pytest.mark.parametrize("name", TINY)
def test_features_only_scripts(name):
    torch.manual_seed(0)
    features = mlpmix.create_model(name, features_only=True, feature_cfg={"norm": True}).eval()
    scripted = torch.jit.script(features)
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        eager, script = features(x), scripted(x)
    assert len(eager) == len(script) == 2
    assert all(torch.equal(a, b) for a, b in zip(eager, script))
    model = mlpmix.create_model(name).eval()
    with torch.inference_mode():
        assert torch.equal(torch.jit.script(model)(x), model(x))


# the input check


@pytest.mark.parametrize("name,size", [("raftmlp_s", 224), ("dynamixer_s", 224),
                                       ("raftmlp_tiny", 8), ("dynamixer_tiny", 8)])
def test_wrong_image_size_names_the_model(name, size):
    model = meta_model(name)
    x = torch.empty(1, 3, size + 32, size + 32, device="meta")
    message = (f"{name} was built for {size}×{size} inputs (img_size={size}), got "
               f"{size + 32}×{size + 32}; create it with img_size={size + 32} to train at that size")
    for forward in (model, model.forward_features, model.forward_intermediates):
        with pytest.raises(ValueError) as error:
            forward(x)
        assert str(error.value) == message
    with pytest.raises(ValueError, match=rf"got {size}×{size + 40}; resize the images to "
                                         rf"{size}×{size}$"):
        model(torch.empty(1, 3, size, size + 40, device="meta"))


@pytest.mark.parametrize("name", ["raftmlp_s", "dynamixer_s"])
def test_wrong_channel_count_names_the_model(name):
    model = meta_model(name)
    with pytest.raises(ValueError) as error:
        model(torch.empty(1, 1, 224, 224, device="meta"))
    assert str(error.value) == (f"{name} was built for 3 input channels (in_chans=3), got 1; "
                                "create it with in_chans=1 to use such images")
    with pytest.raises(ValueError, match=r"batch of images \(B, C, H, W\), got a tensor of shape \[3, 224, 224\]"):
        model(torch.empty(3, 224, 224, device="meta"))


@pytest.mark.parametrize("name,accepted,rejected", [
    ("raftmlp_s", range(221, 225), (220, 225)),  # the embedding rounds 221..224 up to 224
    ("dynamixer_s", range(224, 231), (223, 231)),  # the stem's stride-7 conv floors
])
def test_sizes_giving_the_same_grids_are_accepted(name, accepted, rejected):
    model = meta_model(name)
    for size in accepted:
        model.check_input(torch.empty(1, 3, size, size, device="meta"))
    final = model.forward_features(torch.empty(1, 3, accepted[0], accepted[-1], device="meta"))
    assert final.shape[1:3] == ((7, 7) if name.startswith("raft") else (16, 16))
    for size in rejected:
        with pytest.raises(ValueError, match=f"got {size}×{size}"):
            model.check_input(torch.empty(1, 3, size, size, device="meta"))


def test_input_check_follows_img_size():
    model = meta_model("raftmlp_s", img_size=256, in_chans=1)
    model.check_input(torch.empty(1, 1, 256, 256, device="meta"))
    with pytest.raises(ValueError, match=r"built for 256×256 inputs \(img_size=256\), got 224×224"):
        model.check_input(torch.empty(1, 1, 224, 224, device="meta"))


@pytest.mark.parametrize("name", TINY)
def test_scripted_model_raises_the_message(name):
    """TorchScript re-raises the model's ValueError as torch.jit.Error with its message."""
    scripted = torch.jit.script(mlpmix.create_model(name).eval())
    with pytest.raises(torch.jit.Error, match=f"ValueError: {name} was built for 8×8 inputs"):
        scripted(torch.randn(1, 3, 9, 9))
    with pytest.raises(torch.jit.Error, match=r"built for 3 input channels \(in_chans=3\), got 2"):
        scripted(torch.randn(1, 2, 8, 8))


@pytest.mark.parametrize("name", TINY)
def test_export_with_dynamic_batch_keeps_working(name):
    torch.manual_seed(0)
    model = mlpmix.create_model(name).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},))
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
