"""PyTorch port of the seed article's Keras U-Net ("TGS salt: U-Net with dropout").

Layout as in the article: `conv2d_block` = (3x3 conv -> BN -> ReLU) x 2; four 2x2 max-pool downs,
each followed by dropout (half rate after the first); a bottleneck at 16x filters; 3x3 stride-2
transposed convs up, concatenated with the skip, dropout, `conv2d_block`; a 1x1 output conv.

One deliberate difference: the article's `conv2d_block` passes `input_tensor` to its second conv,
so Keras silently drops the first conv (and its BN) from the graph. Here the two convs are chained
as intended. Returns logits (no sigmoid). Input sides must be divisible by 16 (use 128).
Options beyond the article: `hypercolumn` (all up-blocks' outputs upsampled and concatenated
before the 1x1 head) and `cls_head` (an empty/non-empty logit from the bottleneck; forward then
returns (mask, class logit)) and `deep_supervision` (a 1x1 logit head on each up-block but the
last; in training mode forward then also returns their logits, upsampled to the input size, for
auxiliary losses; eval-mode outputs are unchanged). `residual` makes every block a ResNet basic
block (the two convs plus a shortcut, 1x1 conv + BN where the width changes), as the popular
"U-Net with ResNet blocks" TGS kernels did; `scse` adds concurrent spatial and channel
squeeze-and-excitation (`heads.SCSE`, smp's `SCSEModule`) after each up-block, as many top TGS
teams did in their decoders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tgs.models.heads import SCSE, ClassifierHead, hypercolumn


def conv2d_block(c_in: int, c_out: int, batchnorm: bool = True) -> nn.Sequential:
    """Two 3x3 'same' convs, each followed by optional BN and ReLU."""
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """`conv2d_block` with a shortcut: relu(BN(conv(relu(BN(conv(x))))) + shortcut(x)); the
    shortcut is the identity, or a 1x1 conv (+ BN) where the width changes."""

    def __init__(self, c_in: int, c_out: int, batchnorm: bool = True):
        super().__init__()
        body = conv2d_block(c_in, c_out, batchnorm)
        self.body = body[:-1]  # the last ReLU comes after the sum
        self.shortcut: nn.Module = nn.Identity()
        if c_in != c_out:
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, bias=not batchnorm)]
            self.shortcut = nn.Sequential(*layers + ([nn.BatchNorm2d(c_out)] if batchnorm else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x), inplace=True)


def make_block(c_in: int, c_out: int, batchnorm: bool, residual: bool) -> nn.Module:
    """A plain `conv2d_block` or its residual version."""
    return (
        ResidualBlock(c_in, c_out, batchnorm) if residual else conv2d_block(c_in, c_out, batchnorm)
    )


class SeedUNet(nn.Module):
    """(N, in_channels, H, W) -> logits (N, classes, H, W); H, W divisible by 16."""

    def __init__(
        self,
        in_channels: int = 1,
        *,
        classes: int = 1,
        n_filters: int = 16,
        dropout: float = 0.05,
        batchnorm: bool = True,
        hypercolumn: bool = False,
        cls_head: bool = False,
        deep_supervision: bool = False,
        residual: bool = False,
        scse: bool = False,
    ):
        super().__init__()
        self.use_hypercolumn = hypercolumn
        widths = [n_filters * m for m in (1, 2, 4, 8)]
        self.downs = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.downs.append(make_block(c, w, batchnorm, residual))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.drop_first = nn.Dropout2d(dropout * 0.5) if dropout else nn.Identity()
        self.drop = nn.Dropout2d(dropout) if dropout else nn.Identity()
        self.bottleneck = make_block(c, n_filters * 16, batchnorm, residual)
        c = n_filters * 16
        self.ups, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for w in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(c, w, 3, stride=2, padding=1, output_padding=1))
            block = make_block(2 * w, w, batchnorm, residual)
            self.up_blocks.append(nn.Sequential(block, SCSE(w)) if scse else block)
            c = w
        head_in = sum(widths) if hypercolumn else c
        self.head = nn.Conv2d(head_in, classes, 1)
        self.cls = ClassifierHead(n_filters * 16) if cls_head else None
        self.aux_heads = None  # built only when asked: other nets keep their seeded init
        if deep_supervision:
            coarse = list(reversed(widths))[:-1]
            self.aux_heads = nn.ModuleList([nn.Conv2d(w, classes, 1) for w in coarse])
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):  # Keras' he_normal
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor):
        """Logits (N, classes, H, W); (mask, class logit (N, 1)) with cls_head; in training
        mode with deep_supervision also a list of auxiliary logits (N, classes, H, W)."""
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"seed_unet needs sides divisible by 16, got {tuple(x.shape[-2:])}")
        skips = []
        for i, block in enumerate(self.downs):
            x = block(x)
            skips.append(x)
            x = self.pool(x)
            x = self.drop_first(x) if i == 0 else self.drop(x)
        x = bottom = self.bottleneck(x)
        decoded = []
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips), strict=True):
            x = self.drop(torch.cat([up(x), skip], dim=1))
            x = block(x)
            decoded.append(x)
        mask = self.head(hypercolumn(decoded) if self.use_hypercolumn else x)
        label = self.cls(bottom) if self.cls is not None else None
        if self.aux_heads is not None and self.training:
            size = mask.shape[-2:]
            aux = [
                F.interpolate(head(d), size=size, mode="bilinear", align_corners=False)
                for head, d in zip(self.aux_heads, decoded, strict=False)
            ]
            return mask, label, aux
        return (mask, label) if label is not None else mask
