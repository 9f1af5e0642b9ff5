"""Test-time augmentation as (augment, deaugment) pairs on NCHW tensors, each its own inverse.

A TTA is a named tuple of views; all views of a batch run through the model as one forward
(concatenated on the batch axis), then each is deaugmented and the probabilities averaged
(`tgs.predict.ensemble`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tgs.core.errors import ConfigError
from tgs.predict.ensemble import mean_prediction


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Flip the width axis; applying it twice is the identity."""
    return torch.flip(x, dims=[-1])


Transform = Callable[[torch.Tensor], torch.Tensor]
VIEWS: dict[str, tuple[Transform, Transform]] = {
    "identity": (identity, identity),
    "hflip": (hflip, hflip),
}
TTAS: dict[str, tuple[str, ...]] = {"none": ("identity",), "hflip": ("identity", "hflip")}


def check_tta(name: str) -> str:
    """`name` if it is a registered TTA, else ConfigError listing the valid ones."""
    if name not in TTAS:
        raise ConfigError(f"unknown tta {name!r} (valid: {', '.join(TTAS)})")
    return name


def _forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if hasattr(model, "forward_all"):
        return model.forward_all(x)
    return model(x), None


@torch.no_grad()
def predict_proba(
    model: nn.Module, x: torch.Tensor, tta: str = "hflip"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs (N, C, H, W) -> (pixel probabilities (N, H, W), salt-present probabilities (N,)
    or None without a classifier head), each averaged over the TTA's views. The views run as
    one forward of N x views images."""
    views = [VIEWS[v] for v in TTAS[check_tta(tta)]]
    n = len(x)
    batch = torch.cat([aug(x) for aug, _ in views]) if len(views) > 1 else x
    mask, cls = _forward(model, batch)
    preds = []
    for i, (_, deaug) in enumerate(views):
        p = torch.sigmoid(deaug(mask[i * n : (i + 1) * n]).float())[:, 0]
        c = None if cls is None else torch.sigmoid(cls[i * n : (i + 1) * n].float())
        preds.append((p, c))
    return mean_prediction(preds)
