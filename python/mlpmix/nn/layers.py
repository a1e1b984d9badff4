"""Small layers shared by the model families."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` over the last axis (exact, erf-form GELU)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: Optional[int] = None):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
