"""The classification surface both families share (timm-style)."""

from __future__ import annotations

from torch import Tensor, nn

from .init import init_weights


class TokenClassifier(nn.Module):
    """A backbone producing channels-last tokens ``(B, H, W, num_features)``, then
    LayerNorm per token -> mean over tokens -> dropout -> Linear.

    Subclasses implement :meth:`forward_tokens`.
    """

    def __init__(self, num_features: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.norm = nn.LayerNorm(num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_tokens(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> normalised tokens ``(B, H', W', num_features)``."""
        return self.norm(self.forward_tokens(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(x.mean(dim=(1, 2)))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replaces the classifier (``num_classes=0``: pooled features out)."""
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
        self.head.apply(init_weights)
