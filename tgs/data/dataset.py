"""Torch datasets over in-memory arrays, with albumentations augmentation."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from dataclasses import dataclass  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

MEAN, STD = 0.5, 0.25  # uint8 / 255 is mapped to (x - MEAN) / STD
Z_MEAN, Z_STD = 500.0, 250.0  # depth z (about 50..960 ft) -> roughly [-2, 2]


def normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 tensor (N, 1, H, W), about zero mean, unit scale."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().unsqueeze(1)
    return (x / 255.0 - MEAN) / STD


@dataclass(frozen=True)
class InputSpec:
    """Which channels the model sees: the image, plus optional depth and row-ramp planes."""

    depth: bool = False  # a constant plane of the image's normalised depth z
    ramp: bool = False  # row position, -1 at the top to 1 at the bottom (1st place's trick)

    @property
    def in_channels(self) -> int:
        return 1 + self.depth + self.ramp

    @classmethod
    def from_config(cls, cfg) -> InputSpec:
        return cls(depth=cfg.depth_channel, ramp=cfg.ramp_channel)

    def make(self, images: np.ndarray, z: np.ndarray | None = None) -> torch.Tensor:
        """uint8 images (N, H, W) and depths z (N,) -> float32 inputs (N, in_channels, H, W)."""
        x = normalize(images)
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


def build_augment(hflip: float = 0.5, affine: float = 0.5, brightness_contrast: float = 0.3):
    """albumentations 2.x pipeline for (image, mask) uint8 pairs at 101x101."""
    return A.Compose(
        [
            A.HorizontalFlip(p=hflip),
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.05, 0.05),
                rotate=(-7, 7),
                border_mode=cv2.BORDER_REFLECT_101,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=affine,
            ),
            A.RandomBrightnessContrast(
                brightness_limit=0.1, contrast_limit=0.1, p=brightness_contrast
            ),
        ]
    )


class SaltDataset(Dataset):
    """uint8 images, 0/1 masks (N, H, W) -> (inputs (C, H, W), mask (1, H, W)) float tensors."""

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        augment: A.Compose | None = None,
        z: np.ndarray | None = None,
        spec: InputSpec | None = None,
    ):
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks, self.augment = images, masks, augment
        self.z = np.zeros(len(images)) if z is None else np.asarray(z, dtype=float)
        self.spec = spec or InputSpec()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[i], self.masks[i]
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = self.spec.make(image[None], self.z[i : i + 1])[0]
        y = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
        return x, y
