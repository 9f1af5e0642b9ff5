"""Batch-level augmentation in torch, on whatever device the batch lives (GPU or CPU).

The same family as the albumentations pipeline (hflip, small affine, brightness/contrast), done
for a whole batch at once so the data never leaves the device and no per-sample Python runs.
Only channel 0 (the image) gets brightness/contrast and the affine warp's interpolation; extra
planes (depth, row ramp) are position-free or row-only and are left as they are, except hflip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _affine_theta(n: int, apply: torch.Tensor, g: torch.Generator, device) -> torch.Tensor:
    """(n, 2, 3) affine matrices: small rotate/scale/shift where `apply`, identity elsewhere."""

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=g, device=device) * (hi - lo) + lo) * apply

    angle = u(-7, 7) * math.pi / 180
    scale = 1 + u(-0.1, 0.1)
    tx, ty = u(-0.1, 0.1), u(-0.1, 0.1)  # 5% of the side in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def batch_augment(
    x: torch.Tensor,
    y: torch.Tensor,
    g: torch.Generator,
    *,
    hflip: float = 0.5,
    affine: float = 0.5,
    brightness_contrast: float = 0.3,
    std: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N, C, H, W), masks (N, 1, H, W) -> augmented copies. `g` lives on x's device.
    `std`: the inputs' normalisation (x = (pixel / 255 - mean) / std), so that the brightness
    shift is +-0.1 of the pixel range whatever the weights' normalisation."""
    n, dev = x.shape[0], x.device
    flip = (torch.rand(n, generator=g, device=dev) < hflip).view(n, 1, 1, 1)
    x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
    warp = (torch.rand(n, generator=g, device=dev) < affine).float()
    if warp.any():
        theta = _affine_theta(n, warp, g, dev).to(x.dtype)
        grid = F.affine_grid(theta, list(y.shape), align_corners=False)
        img = F.grid_sample(
            x[:, :1], grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        y = F.grid_sample(y, grid, mode="nearest", padding_mode="reflection", align_corners=False)
        x = torch.cat([img, x[:, 1:]], dim=1)
    bc = (torch.rand(n, generator=g, device=dev) < brightness_contrast).to(x.dtype)
    contrast = 1 + bc * (torch.rand(n, generator=g, device=dev) * 0.2 - 0.1)
    bright = bc * (torch.rand(n, generator=g, device=dev) * 0.8 - 0.4)  # +-0.1 x 255 / 0.25
    bright = bright * (0.25 / std) if std != 0.25 else bright
    img = x[:, :1] * contrast.view(n, 1, 1, 1) + bright.view(n, 1, 1, 1)
    return torch.cat([img, x[:, 1:]], dim=1), y


class DeviceBatches:
    """The whole train set as tensors on the device; yields augmented shuffled batches.

    inputs (N, C, H, W) and masks (N, 1, H, W) already on the device. With `world` > 1 each rank
    takes a disjoint shard of every epoch's permutation (DistributedSampler's contract).
    """

    def __init__(self, inputs, masks, batch_size: int, aug: dict | None, *, rank=0, world=1):
        self.inputs, self.masks, self.batch_size, self.aug = inputs, masks, batch_size, aug
        self.rank, self.world = rank, world

    def epoch(self, seed: int):
        dev = self.inputs.device
        g = torch.Generator(device=dev).manual_seed(seed)
        perm = torch.randperm(len(self.inputs), generator=torch.Generator().manual_seed(seed))
        perm = perm[: len(perm) - len(perm) % self.world]  # equal shards: equal batch counts
        perm = perm[self.rank :: self.world].to(dev)
        n_batches = max(1, len(perm) // self.batch_size)
        for b in range(n_batches):
            idx = perm[b * self.batch_size : (b + 1) * self.batch_size]
            x, y = self.inputs[idx], self.masks[idx]
            if self.aug is not None:
                x, y = batch_augment(x, y, g, **self.aug)
            yield x, y
