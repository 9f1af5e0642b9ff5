"""Torch datasets over in-memory arrays, with albumentations augmentation."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tgs.data.inputs import InputSpec, normalize

__all__ = ["InputSpec", "SaltDataset", "build_augment", "normalize"]


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
