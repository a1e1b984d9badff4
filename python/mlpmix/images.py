"""Image files to model input: the preprocessing ``mlpmix predict`` applies, stored in each
exported model's metadata (``"preprocessing"``) so that training and prediction agree."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from torch import Tensor


@dataclass(frozen=True)
class Preprocessing:
    """Open the image, convert it to grayscale (``channels=1``) or RGB (``3``), resize it to
    ``size`` (height, width) by area averaging, and scale values to [0, 1]. With
    ``invert_light_background`` an image whose mean is above 0.5 is inverted (1 - x), so
    that dark-ink-on-paper pictures match data drawn light on dark (scikit-learn's digits:
    0 is background, 16 is ink; the demo trains on them divided by 16)."""

    size: Tuple[int, int]
    channels: int = 1
    invert_light_background: bool = False

    def __call__(self, path: Union[str, Path]) -> Tensor:
        """The image at ``path`` as a float tensor ``(channels, height, width)``."""
        from PIL import Image  # the `demo` extra

        with Image.open(path) as image:
            image = image.convert("L" if self.channels == 1 else "RGB")
            image = image.resize(self.size[::-1], Image.Resampling.BOX)
            data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        x = data.view(self.size[0], self.size[1], self.channels).permute(2, 0, 1).float() / 255
        if self.invert_light_background and x.mean() > 0.5:
            x = 1 - x
        return x

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Preprocessing":
        return cls(size=tuple(data["size"]), channels=data["channels"],
                   invert_light_background=data["invert_light_background"])
