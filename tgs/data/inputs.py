"""Model inputs from uint8 images: normalisation and optional depth / row-ramp planes.

Imports nothing from training (no albumentations): inference and the Kaggle kernel use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MEAN, STD = 0.5, 0.25  # from scratch: uint8 / 255 is mapped to (x - MEAN) / STD
Z_MEAN, Z_STD = 500.0, 250.0  # depth z (about 50..960 ft) -> roughly [-2, 2]


def normalize(images: np.ndarray, mean: float = MEAN, std: float = STD) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 tensor (N, 1, H, W): (images / 255 - mean) / std."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().unsqueeze(1)
    return (x / 255.0 - mean) / std


@dataclass(frozen=True)
class InputSpec:
    """Which channels the model sees: the image, plus optional depth and row-ramp planes."""

    depth: bool = False  # a constant plane of the image's normalised depth z
    ramp: bool = False  # row position, -1 at the top to 1 at the bottom (1st place's trick)
    mean: float = MEAN  # the image plane is (uint8 / 255 - mean) / std: the weights' own
    std: float = STD

    @property
    def in_channels(self) -> int:
        return 1 + self.depth + self.ramp

    @classmethod
    def from_config(cls, cfg) -> InputSpec:
        """The inputs of a resolved config (input_mean/std set; None: from scratch's)."""
        mean = MEAN if cfg.input_mean is None else cfg.input_mean
        std = STD if cfg.input_std is None else cfg.input_std
        return cls(depth=cfg.depth_channel, ramp=cfg.ramp_channel, mean=mean, std=std)

    def make(self, images: np.ndarray, z: np.ndarray | None = None) -> torch.Tensor:
        """uint8 images (N, H, W) and depths z (N,) -> float32 inputs (N, in_channels, H, W)."""
        x = normalize(images, self.mean, self.std)
        planes = [x]
        n, _, h, w = x.shape
        if self.depth:
            if z is None or np.isnan(np.asarray(z, dtype=float)).any():
                raise ValueError("depth_channel needs a finite depth z for every image")
            zt = (torch.as_tensor(np.asarray(z, dtype=np.float32)) - Z_MEAN) / Z_STD
            planes.append(zt.view(n, 1, 1, 1).expand(n, 1, h, w))
        if self.ramp:
            planes.append(torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w))
        return torch.cat(planes, dim=1) if len(planes) > 1 else x
