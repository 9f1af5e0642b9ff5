"""Loss registry over smp.losses: `create_loss("0.5*bce+lovasz")`. All take logits (N, 1, H, W)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tgs.errors import ConfigError


def _smp():
    import segmentation_models_pytorch as smp

    return smp.losses


class LovaszHinge(nn.Module):
    """Lovasz hinge per image on logits (N, 1, H, W), with a choice of error activation.

    activation "relu" is the standard hinge (as smp); "elu" uses elu(e) + 1, the smooth variant
    top TGS teams used late in training. `symmetric` averages the loss on (logits, y) and on
    (-logits, 1 - y), so empty masks also give a useful gradient.
    """

    def __init__(self, activation: str = "relu", symmetric: bool = False):
        super().__init__()
        if activation not in ("relu", "elu"):
            raise ConfigError(f"unknown Lovasz activation {activation!r} (valid: relu, elu)")
        self.activation, self.symmetric = activation, symmetric

    def _one(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        from segmentation_models_pytorch.losses.lovasz import _lovasz_grad

        signs = 2.0 * labels - 1.0
        errors = 1.0 - logits * signs
        errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
        grad = _lovasz_grad(labels[perm])
        act = F.relu(errors_sorted) if self.activation == "relu" else F.elu(errors_sorted) + 1
        return torch.dot(act, grad)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.flatten(1).float(), target.flatten(1).float()
        losses = [self._one(lg, t) for lg, t in zip(logits, target, strict=True)]
        if self.symmetric:
            losses += [self._one(-lg, 1 - t) for lg, t in zip(logits, target, strict=True)]
        return torch.stack(losses).mean()


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "bce": lambda: nn.BCEWithLogitsLoss(),
    "dice": lambda: _smp().DiceLoss("binary", from_logits=True),
    "soft_bce": lambda: _smp().SoftBCEWithLogitsLoss(smooth_factor=0.05),
    "focal": lambda: _smp().FocalLoss("binary"),
    "jaccard": lambda: _smp().JaccardLoss("binary", from_logits=True),
    # smp's default is per_image=False; TGS scores per image, so per image here
    "lovasz": lambda: _smp().LovaszLoss("binary", per_image=True),
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


def create_loss(spec: str) -> WeightedSum:
    """'bce', 'bce+dice', '0.5*bce+lovasz' -> a loss module on (logits, 0/1 float target)."""
    parts = []
    for term in spec.split("+"):
        match = _TERM.match(term)
        if not match:
            raise ConfigError(f"cannot parse loss term {term!r} in {spec!r} (e.g. '0.5*bce+dice')")
        weight, name = float(match.group(1) or 1.0), match.group(2)
        if name not in LOSSES:
            close = difflib.get_close_matches(name, list(LOSSES), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown loss {name!r}{hint} (valid: {', '.join(LOSSES)})")
        parts.append((weight, name, LOSSES[name]()))
    return WeightedSum(parts)
