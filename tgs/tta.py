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
def predict_proba(model: nn.Module, x: torch.Tensor, tta: str = "hflip") -> torch.Tensor:
    """Inputs (N, C, H, W) -> probabilities (N, H, W), averaged over the TTA's views."""
    views = TTAS[tta]
    total = None
    for aug, deaug in views:
        p = torch.sigmoid(deaug(model(aug(x))).float())[:, 0]
        total = p if total is None else total + p
    return total / len(views)
