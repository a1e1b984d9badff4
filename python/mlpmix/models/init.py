"""Weight initialisation shared by both families (spec 2.3)."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """Truncated normal (std 0.02) Linear weights, zero Linear biases, LayerNorm 1 / 0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def drop_path_rates(rate: float, count: int) -> list:
    """Stochastic-depth rates growing linearly from 0 to ``rate`` over ``count`` blocks."""
    return [rate * i / max(count - 1, 1) for i in range(count)]
