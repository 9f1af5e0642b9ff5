"""Decoder options shared by the nets: hypercolumn heads and an empty/non-empty classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hypercolumn(features: list[torch.Tensor]) -> torch.Tensor:
    """Upsample every decoder feature map to the last one's size and concatenate on channels."""
    size = features[-1].shape[-2:]
    ups = [
        f
        if f.shape[-2:] == size
        else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        for f in features
    ]
    return torch.cat(ups, dim=1)


class SMPHypercolumn(nn.Module):
    """smp Unet/Unet++ with a hypercolumn head: all decoder blocks' outputs, upsampled and
    concatenated, feed a 3x3 conv head. Returns mask logits, or (mask, class logit) with an
    smp `classification_head`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self._feats: list[torch.Tensor] = []
        blocks = net.decoder.blocks
        channels = []
        for block in blocks:
            block.register_forward_hook(self._capture)  # a bound method: deepcopy rebinds it
            channels.append(_out_channels(block))
        self.head = nn.Conv2d(sum(channels), 1, 3, padding=1)

    def _capture(self, _module: nn.Module, _inputs, output: torch.Tensor) -> None:
        self._feats.append(output)

    def forward(self, x: torch.Tensor):
        self._feats = []
        features = self.net.encoder(x)
        self.net.decoder(features)
        mask = self.head(hypercolumn(self._feats))
        self._feats = []
        if self.net.classification_head is not None:
            return mask, self.net.classification_head(features[-1])
        return mask


def _out_channels(block: nn.Module) -> int:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


class ClassifierHead(nn.Module):
    """Global-average-pooled features -> one logit per image (salt present)."""

    def __init__(self, channels: int, dropout: float = 0.2):
        super().__init__()
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(-2, -1)))
