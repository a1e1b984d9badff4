"""The two architectures written the way the authors' code lays them out (spec section 3),
in plain PyTorch, independently of mlpmix's ops, modules and converter.

Their state dicts have the authors' keys (``levels.{L}.fn.{i}...``, ``network.{k}...``)
and their raft LayerNorms work in raft-major channel order, so converting their weights
with mlpmix.convert and comparing outputs checks the converter and mlpmix's models at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mlpmix.models import RAFTMLP_CONFIGS


def _mlp(features: int, hidden: int) -> nn.Sequential:
    # indices 0 and 3 carry the weights, as in the authors' Sequentials
    return nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Dropout(0.0),
                         nn.Linear(hidden, features))


class RaftMajor(nn.Module):
    def __init__(self, raft_size):
        super().__init__()
        self.raft_size = raft_size

    def forward(self, x):
        return rearrange(x, "b h w (r o) -> b h w (o r)", r=self.raft_size)


class OfficialRaftMixing(nn.Module):
    """``.norm.1`` LayerNorm in (o r) channel order, ``.fn.0``/``.fn.3`` the token MLP."""

    def __init__(self, dim, tokens, raft_size, vertical):
        super().__init__()
        self.raft_size, self.vertical = raft_size, vertical
        self.norm = nn.Sequential(RaftMajor(raft_size), nn.LayerNorm(dim))
        self.fn = _mlp(raft_size * tokens, 2 * raft_size * tokens)

    def forward(self, x):
        u = self.norm(x)
        r = self.raft_size
        if self.vertical:
            v = self.fn(rearrange(u, "b h w (o r) -> b o w (r h)", r=r))
            return x + rearrange(v, "b o w (r h) -> b h w (r o)", r=r)
        v = self.fn(rearrange(u, "b h w (o r) -> b o h (r w)", r=r))
        return x + rearrange(v, "b o h (r w) -> b h w (r o)", r=r)


class OfficialChannelMixing(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = _mlp(dim, 4 * dim)

    def forward(self, x):
        return x + self.fn(self.norm(x))


class OfficialEmbedding(nn.Module):
    """Unfold per kernel (stride min(ks), padding (k-s)/2), concat, ``.fc``."""

    def __init__(self, in_dim, dim, kernels):
        super().__init__()
        self.kernels, self.stride = kernels, min(kernels)
        self.fc = nn.Linear(in_dim * sum(k * k for k in kernels), dim)

    def forward(self, x):  # (B, C, H, W) -> (B, H/s, W/s, dim)
        s = self.stride
        h, w = x.shape[-2:]
        if h % s or w % s:
            x = F.interpolate(x, size=(-(-h // s) * s, -(-w // s) * s), mode="bicubic",
                              align_corners=False)
        patches = torch.cat([F.unfold(x, k, padding=(k - s) // 2, stride=s)
                             for k in self.kernels], dim=1)
        tokens = self.fc(patches.transpose(1, 2))
        return tokens.reshape(x.shape[0], x.shape[-2] // s, x.shape[-1] // s, -1)


class OfficialRaftLevel(nn.Module):
    def __init__(self, in_dim, dim, kernels, grid, depth, raft_size):
        super().__init__()
        blocks = [nn.Sequential(nn.Identity(), OfficialRaftMixing(dim, grid, raft_size, True),
                                nn.Identity(), OfficialRaftMixing(dim, grid, raft_size, False),
                                nn.Identity(), OfficialChannelMixing(dim))
                  for _ in range(depth)]
        self.fn = nn.Sequential(OfficialEmbedding(in_dim, dim, kernels), nn.Identity(), *blocks)

    def forward(self, x):
        return self.fn(x)


class OfficialRaftMLP(nn.Module):
    def __init__(self, arch, num_classes=1000, in_chans=3):
        super().__init__()
        config = RAFTMLP_CONFIGS[arch]
        levels, in_dim, grid = [], in_chans, config.img_size
        for dim, depth, kernels in zip(config.dims, config.depths, config.kernels):
            grid = -(-grid // min(kernels))
            levels.append(OfficialRaftLevel(in_dim, dim, list(kernels), grid, depth,
                                            config.raft_size))
            in_dim = dim
        self.levels = nn.ModuleList(levels)
        self.heads = nn.Sequential(nn.Sequential(nn.Identity(), nn.LayerNorm(in_dim)))
        self.classifier = nn.Linear(in_dim, num_classes)

    def forward(self, x):
        for level in self.levels:
            x = level(x).permute(0, 3, 1, 2)
        return self.classifier(self.heads(x.permute(0, 2, 3, 1)).mean(dim=(1, 2)))


#: The authors' DynaMixer configurations as ``models/configs/conf_dynamixer.py`` gives them:
#: four configured stages; a downsampling follows stage i only when ``transitions[i]`` is true
#: or the width changes, so consecutive stages without one continue an effective stage.
#: The tiny row (8x8 digits, stem patch 1) has the same shape of tree on a small scale.
AUTHORS_DYNAMIXER_CONFIGS = {
    "dynamixer_s": dict(layers=[4, 3, 8, 3], transitions=[True, False, False, False],
                        resolutions=[32, 16, 16, 16], num_heads=[8, 16, 16, 16],
                        embed_dims=[192, 384, 384, 384], reduced_dims=[2, 2, 2, 2], patch_size=7),
    "dynamixer_m": dict(layers=[4, 3, 14, 3], transitions=[False, True, False, False],
                        resolutions=[32, 32, 16, 16], num_heads=[8, 8, 16, 16],
                        embed_dims=[256, 256, 512, 512], reduced_dims=[2, 2, 2, 2], patch_size=7),
    "dynamixer_l": dict(layers=[8, 8, 16, 4], transitions=[True, False, False, False],
                        resolutions=[32, 16, 16, 16], num_heads=[8, 16, 16, 16],
                        embed_dims=[256, 512, 512, 512], reduced_dims=[8, 8, 8, 8], patch_size=7),
    "dynamixer_tiny": dict(layers=[2, 1, 1], transitions=[True, False, False],
                           resolutions=[8, 4, 4], num_heads=[4, 8, 8],
                           embed_dims=[32, 64, 64], reduced_dims=[2, 2, 2], patch_size=1),
}


class OfficialMlp(nn.Module):
    """``models/utils.py`` Mlp: fc1 -> GELU -> fc2."""

    def __init__(self, in_features, hidden_features, out_features=None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class OfficialDynaMixerOp(nn.Module):
    """``models/dynamixer.py`` DynaMixerOp on (B, L, C)."""

    def __init__(self, dim, seq_len, num_head, reduced_dim):
        super().__init__()
        self.num_head, self.reduced_dim = num_head, reduced_dim
        self.out = nn.Linear(dim, dim)
        self.compress = nn.Linear(dim, num_head * reduced_dim)
        self.generate = nn.Linear(seq_len * reduced_dim, seq_len * seq_len)

    def forward(self, x):
        b, n, c = x.shape
        weights = self.compress(x).reshape(b, n, self.num_head, self.reduced_dim)
        weights = self.generate(weights.permute(0, 2, 1, 3).reshape(b, self.num_head, -1))
        weights = weights.reshape(b, self.num_head, n, n).softmax(dim=-2)
        x = x.reshape(b, n, self.num_head, c // self.num_head).permute(0, 2, 3, 1)
        x = torch.matmul(x, weights)
        return self.out(x.permute(0, 3, 1, 2).reshape(b, n, c))


class OfficialDynaMixerBlock(nn.Module):
    """``models/dynamixer.py`` DynaMixerBlock on (B, H, W, C): the layer's ``attn``."""

    def __init__(self, dim, resolution, num_head, reduced_dim):
        super().__init__()
        self.mix_h = OfficialDynaMixerOp(dim, resolution, num_head, reduced_dim)
        self.mix_w = OfficialDynaMixerOp(dim, resolution, num_head, reduced_dim)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = OfficialMlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, h, w, c = x.shape
        mixed_h = self.mix_h(x.permute(0, 2, 1, 3).reshape(-1, h, c)).reshape(b, w, h, c).permute(0, 2, 1, 3)
        mixed_w = self.mix_w(x.reshape(-1, w, c)).reshape(b, h, w, c)
        mixed_c = self.mlp_c(x)
        a = (mixed_h + mixed_w + mixed_c).permute(0, 3, 1, 2).flatten(2).mean(2)
        a = self.reweight(a).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(2).unsqueeze(2)
        return self.proj(mixed_h * a[0] + mixed_w * a[1] + mixed_c * a[2])


class OfficialVisionBlock(nn.Module):
    """``models/vision_model.py`` VisionBlock: ``norm1``, ``attn``, ``norm2``, ``mlp``."""

    def __init__(self, dim, resolution, num_head, reduced_dim, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = OfficialDynaMixerBlock(dim, resolution, num_head, reduced_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = OfficialMlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class OfficialDownsample(nn.Module):
    """``models/utils.py`` Downsample on (B, H, W, C)."""

    def __init__(self, in_embed_dim, out_embed_dim, patch_size):
        super().__init__()
        self.proj = nn.Conv2d(in_embed_dim, out_embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class OfficialPatchEmbed(nn.Module):
    def __init__(self, in_chans, embed_dim, patch_size):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x)


class OfficialDynaMixer(nn.Module):
    """``models/vision_model.py`` VisionModel: ``network`` holds one Sequential per
    configured stage, with a Downsample after stage i only where ``transitions[i]`` is true
    or the width changes."""

    def __init__(self, arch, num_classes=1000, in_chans=3):
        super().__init__()
        cfg = AUTHORS_DYNAMIXER_CONFIGS[arch]
        layers, dims = cfg["layers"], cfg["embed_dims"]
        self.patch_embed = OfficialPatchEmbed(in_chans, dims[0], cfg["patch_size"])
        network = []
        for i in range(len(layers)):
            network.append(nn.Sequential(*[
                OfficialVisionBlock(dims[i], cfg["resolutions"][i], cfg["num_heads"][i],
                                    cfg["reduced_dims"][i], mlp_ratio=3)
                for _ in range(layers[i])]))
            if i >= len(layers) - 1:
                break
            if cfg["transitions"][i] or dims[i] != dims[i + 1]:
                network.append(OfficialDownsample(dims[i], dims[i + 1],
                                                  2 if cfg["transitions"][i] else 1))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        for block in self.network:
            x = block(x)
        b, h, w, c = x.shape
        return self.head(self.norm(x.reshape(b, -1, c)).mean(1))


def official_model(arch, **kwargs):
    """The authors' tree for an mlpmix model name."""
    cls = OfficialDynaMixer if arch in AUTHORS_DYNAMIXER_CONFIGS else OfficialRaftMLP
    return cls(arch, **kwargs)
