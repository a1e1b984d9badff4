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

from mlpmix.models import DYNAMIXER_CONFIGS, RAFTMLP_CONFIGS


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


class OfficialDynaMixerOp(nn.Module):
    def __init__(self, tokens, dim, segments, reduced):
        super().__init__()
        self.segments = segments
        self.compress = nn.Linear(dim, segments * reduced)
        self.generate = nn.Linear(tokens * reduced, tokens * tokens)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):  # (B, N, D)
        b, n, d = x.shape
        s = self.segments
        z = self.compress(x).reshape(b, n, s, -1).permute(0, 2, 1, 3).reshape(b, s, -1)
        p = self.generate(z).reshape(b, s, n, n).softmax(dim=2)  # over input tokens
        xs = x.reshape(b, n, s, d // s).permute(0, 2, 1, 3)
        y = (p.transpose(-1, -2) @ xs).permute(0, 2, 1, 3).reshape(b, n, d)
        return self.out(y)


class OfficialMlp(nn.Module):
    def __init__(self, features, hidden, out):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class OfficialDynaMixerBlock(nn.Module):
    def __init__(self, dim, resolution, segments, reduced):
        super().__init__()
        self.mix_h = OfficialDynaMixerOp(resolution, dim, segments, reduced)
        self.mix_w = OfficialDynaMixerOp(resolution, dim, segments, reduced)
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.reweight = OfficialMlp(dim, dim // 4, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, h, w, c = x.shape
        mixed_h = self.mix_h(x.transpose(1, 2).reshape(b * w, h, c)).reshape(b, w, h, c).transpose(1, 2)
        mixed_w = self.mix_w(x.reshape(b * h, w, c)).reshape(b, h, w, c)
        mixed_c = self.mlp_c(x)
        a = (mixed_h + mixed_w + mixed_c).permute(0, 3, 1, 2).flatten(2).mean(2)
        a = self.reweight(a).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0)[:, :, None, None, :]
        return self.proj(mixed_h * a[0] + mixed_w * a[1] + mixed_c * a[2])


class OfficialDynaMixerLayer(nn.Module):
    def __init__(self, dim, resolution, segments, reduced):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = OfficialDynaMixerBlock(dim, resolution, segments, reduced)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = OfficialMlp(dim, 3 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class OfficialDownsample(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_dim, dim, kernel_size=2, stride=2)

    def forward(self, x):
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class OfficialPatchEmbed(nn.Module):
    def __init__(self, in_chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).permute(0, 2, 3, 1)


class OfficialDynaMixer(nn.Module):
    def __init__(self, arch, num_classes=1000, in_chans=3):
        super().__init__()
        config = DYNAMIXER_CONFIGS[arch]
        self.patch_embed = OfficialPatchEmbed(in_chans, config.dims[0], config.patch_size)
        network, resolution = [], config.img_size // config.patch_size
        for i, (depth, dim, segments) in enumerate(zip(config.layers, config.dims, config.segments)):
            if i > 0:
                network.append(OfficialDownsample(config.dims[i - 1], dim))
                resolution //= 2
            network.append(nn.Sequential(*[OfficialDynaMixerLayer(dim, resolution, segments,
                                                                  config.reduced_dim)
                                           for _ in range(depth)]))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(config.dims[-1])
        self.head = nn.Linear(config.dims[-1], num_classes)

    def forward(self, x):
        x = self.patch_embed(x)
        for stage in self.network:
            x = stage(x)
        return self.head(self.norm(x).mean(dim=(1, 2)))


def official_model(arch, **kwargs):
    cls = OfficialRaftMLP if arch.startswith("raftmlp") else OfficialDynaMixer
    return cls(arch, **kwargs)
