"""Test-time augmentation as (augment, deaugment) pairs on NCHW tensors, each its own inverse."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Flip the width axis; applying it twice is the identity."""
    return torch.flip(x, dims=[-1])


TTAS: dict[str, list[tuple[Callable, Callable]]] = {
    "none": [(identity, identity)],
    "hflip": [(identity, identity), (hflip, hflip)],
}


@torch.no_grad()
def predict_proba(
    model: nn.Module, x: torch.Tensor, tta: str = "hflip"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs (N, C, H, W) -> (pixel probabilities (N, H, W), salt-present probabilities (N,)
    or None without a classifier head), each averaged over the TTA's views."""
    views = TTAS[tta]
    total, total_cls = None, None
    for aug, deaug in views:
        mask, cls = (
            model.forward_all(aug(x)) if hasattr(model, "forward_all") else (model(aug(x)), None)
        )
        p = torch.sigmoid(deaug(mask).float())[:, 0]
        total = p if total is None else total + p
        if cls is not None:
            c = torch.sigmoid(cls.float())
            total_cls = c if total_cls is None else total_cls + c
    return total / len(views), None if total_cls is None else total_cls / len(views)
