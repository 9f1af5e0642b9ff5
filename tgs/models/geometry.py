"""101 <-> model-size geometry on NCHW tensors, each transform with its inverse.

`pad` reflects 101 -> 128 (13 rows/cols before, 14 after) and crops back exactly; `resize` is
bilinear both ways (its inverse is exact in shape, approximate in values); `none` passes through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tgs import IMAGE_SIZE
from tgs.core.config import key_choices
from tgs.core.errors import ConfigError

GEOMETRIES = key_choices("geometry")


def pad_amounts(size: int, target: int) -> tuple[int, int]:
    """(before, after) padding that takes `size` to `target`."""
    total = target - size
    if total < 0:
        raise ValueError(f"cannot pad {size} down to {target}")
    return total // 2, total - total // 2


class Geometry:
    """Maps (N, C, 101, 101) inputs to the model size and (N, C, S, S) outputs back to 101."""

    def __init__(self, mode: str = "pad", size: int = 128, image_size: int = IMAGE_SIZE):
        if mode not in GEOMETRIES:
            raise ConfigError(f"unknown geometry {mode!r}; valid: {', '.join(GEOMETRIES)}")
        if mode == "pad" and size < image_size:
            raise ConfigError(f"pad geometry needs size >= {image_size}, got {size}")
        self.mode, self.size, self.image_size = mode, size, image_size
        self.before, self.after = pad_amounts(image_size, size) if mode == "pad" else (0, 0)

    @property
    def model_size(self) -> int:
        return self.image_size if self.mode == "none" else self.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 101, 101) -> (N, C, S, S)."""
        if self.mode == "pad":
            b, a = self.before, self.after
            return F.pad(x, (b, a, b, a), mode="reflect")
        if self.mode == "resize":
            return F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, C, 101, 101); exact inverse of `forward` for `pad` and `none`."""
        if self.mode == "pad":
            b, n = self.before, self.image_size
            return y[..., b : b + n, b : b + n]
        if self.mode == "resize":
            size = (self.image_size, self.image_size)
            return F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y

    def __repr__(self) -> str:
        return f"Geometry(mode={self.mode!r}, size={self.model_size})"
