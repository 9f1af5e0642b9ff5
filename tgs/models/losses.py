"""Loss registry over smp.losses: `create_loss("0.5*bce+lovasz")`. All take logits (N, 1, H, W)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tgs.core.errors import ConfigError


def _smp():
    import segmentation_models_pytorch as smp  # optional: seed_unet runs need no smp

    return smp.losses


def lovasz_hinge_per_image(
    logits: torch.Tensor, target: torch.Tensor, activation: str = "relu"
) -> torch.Tensor:
    """Lovasz hinge of each image at once: logits and binary targets (N, P) -> (N,) losses.

    The same values (and, without tied errors, gradients) as smp's per-image loop
    (`_lovasz_hinge_flat` on each image), in one batched sort instead of N small ones."""
    signs = 2.0 * target - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=1, descending=True)
    gt = target.gather(1, perm)
    gts = gt.sum(1, keepdim=True)
    jaccard = 1.0 - (gts - gt.cumsum(1)) / (gts + (1.0 - gt).cumsum(1))
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    act = F.relu(errors_sorted) if activation == "relu" else F.elu(errors_sorted) + 1
    return (act * grad).sum(1)


class LovaszHinge(nn.Module):
    """Lovasz hinge per image on logits (N, 1, H, W), with a choice of error activation.

    activation "relu" is the standard hinge (smp's `LovaszLoss(per_image=True)`); "elu" uses
    elu(e) + 1, the smooth variant top TGS teams used late in training. `symmetric` averages
    the loss on (logits, y) and on (-logits, 1 - y), so empty masks also give a useful gradient.
    """

    def __init__(self, activation: str = "relu", symmetric: bool = False):
        super().__init__()
        if activation not in ("relu", "elu"):
            raise ConfigError(f"unknown Lovasz activation {activation!r} (valid: relu, elu)")
        self.activation, self.symmetric = activation, symmetric

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.flatten(1).float(), target.flatten(1).float()
        losses = lovasz_hinge_per_image(logits, target, self.activation)
        if self.symmetric:
            flipped = lovasz_hinge_per_image(-logits, 1.0 - target, self.activation)
            losses = torch.cat([losses, flipped])
        return losses.mean()


SMP_LOSSES = frozenset({"dice", "soft_bce", "focal", "jaccard", "lovasz_batch"})  # smp's own
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "bce": lambda: nn.BCEWithLogitsLoss(),
    "dice": lambda: _smp().DiceLoss("binary", from_logits=True),
    "soft_bce": lambda: _smp().SoftBCEWithLogitsLoss(smooth_factor=0.05),
    "focal": lambda: _smp().FocalLoss("binary"),
    "jaccard": lambda: _smp().JaccardLoss("binary", from_logits=True),
    # smp's default is per_image=False; TGS scores per image, so per image here (smp's values,
    # batched: `lovasz_hinge_per_image`)
    "lovasz": lambda: LovaszHinge("relu"),
    "lovasz_batch": lambda: _smp().LovaszLoss("binary", per_image=False),
    "lovasz_elu": lambda: LovaszHinge("elu"),
    "lovasz_symmetric": lambda: LovaszHinge("relu", symmetric=True),
}


class WeightedSum(nn.Module):
    """sum_i w_i * loss_i(logits, target)."""

    def __init__(self, parts: list[tuple[float, str, nn.Module]]):
        super().__init__()
        self.weights = [w for w, _, _ in parts]
        self.names = [n for _, n, _ in parts]
        self.losses = nn.ModuleList([m for _, _, m in parts])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for w, loss in zip(self.weights, self.losses, strict=True):
            total = total + w * loss(logits, target)
        return total

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{n}" for w, n in zip(self.weights, self.names, strict=True))


_TERM = re.compile(r"^\s*(?:(\d*\.?\d+(?:e-?\d+)?)\s*\*\s*)?([a-z_0-9]+)\s*$")


def loss_terms(spec: str) -> list[tuple[float, str]]:
    """'0.5*bce+lovasz' -> [(0.5, 'bce'), (1.0, 'lovasz')]; ConfigError naming a bad term or an
    unknown loss (with the valid names)."""
    terms = []
    for term in spec.split("+"):
        match = _TERM.match(term)
        if not match:
            raise ConfigError(f"cannot parse loss term {term!r} in {spec!r} (e.g. '0.5*bce+dice')")
        weight, name = float(match.group(1) or 1.0), match.group(2)
        if name not in LOSSES:
            close = difflib.get_close_matches(name, list(LOSSES), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown loss {name!r}{hint} (valid: {', '.join(LOSSES)})")
        terms.append((weight, name))
    return terms


def create_loss(spec: str) -> WeightedSum:
    """'bce', 'bce+dice', '0.5*bce+lovasz' -> a loss module on (logits, 0/1 float target)."""
    return WeightedSum([(weight, name, LOSSES[name]()) for weight, name in loss_terms(spec)])
