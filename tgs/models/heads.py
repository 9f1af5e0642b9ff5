"""Decoder options shared by the nets: hypercolumn heads and an empty/non-empty classifier."""

from __future__ import annotations

from collections.abc import Sequence

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


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (Roy et al. 2018): x * cSE(x) +
    x * sSE(x), the same layers and state-dict keys as smp's `SCSEModule` (which has no hidden
    channel below 16 inputs; here at least one). Kept here because seed_unet runs in Kaggle
    kernels, whose image has no segmentation-models-pytorch."""

    def __init__(self, in_channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, in_channels // reduction)
        self.cSE = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, in_channels, 1),
            nn.Sigmoid(),
        )
        self.sSE = nn.Sequential(nn.Conv2d(in_channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cSE(x) + x * self.sSE(x)


class UnetHypercolumn(nn.Module):
    """smp Unet with a hypercolumn head: every decoder block's output, upsampled to the last
    one's size and concatenated (channels from the decoder's declared `out_channels`), feeds a
    3x3 conv head that replaces smp's `segmentation_head`. Returns mask logits, or (mask, class
    logit) with an smp `classification_head`. No hooks, no state kept between calls."""

    def __init__(self, net: nn.Module, decoder_channels: Sequence[int]):
        super().__init__()
        if len(decoder_channels) != len(net.decoder.blocks):
            raise ValueError(
                f"{len(decoder_channels)} channels for {len(net.decoder.blocks)} blocks"
            )
        channels = list(decoder_channels)
        net.segmentation_head = nn.Identity()  # replaced by `head`: no unused parameters
        self.net = net
        self.head = nn.Conv2d(sum(channels), 1, 3, padding=1)

    def decode(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """smp UnetDecoder.forward, returning every block's output instead of the last."""
        decoder = self.net.decoder
        shapes = [f.shape[2:] for f in features][::-1]
        feats = features[1:][::-1]
        x, skips = decoder.center(feats[0]), feats[1:]
        outputs = []
        for i, block in enumerate(decoder.blocks):
            h, w = shapes[i + 1]
            x = block(x, h, w, skip_connection=skips[i] if i < len(skips) else None)
            outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor):
        features = self.net.encoder(x)
        mask = self.head(hypercolumn(self.decode(features)))
        if self.net.classification_head is not None:
            return mask, self.net.classification_head(features[-1])
        return mask


class ClassifierHead(nn.Module):
    """Global-average-pooled features -> one logit per image (salt present)."""

    def __init__(self, channels: int, dropout: float = 0.2):
        super().__init__()
        self.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(-2, -1)))
