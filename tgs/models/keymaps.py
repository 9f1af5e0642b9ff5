"""Key names of encoder weight files: which naming a file uses, and the tables that map it to
the encoder's own (timm's or torchvision's) names. Pure: state dicts in, state dicts out.

Formats a file may use:
    timm         timm's module names (`conv_stem.weight`, `blocks.1.0.conv_pw.weight`)
    torchvision  torchvision's (`conv1.weight`, `layer1.0.conv1.weight`); timm's ResNets share them
    smp          a segmentation_models_pytorch model or encoder (`encoder.` and, for a `tu-`
                 encoder, `encoder.model.` before the timm names); only the encoder's keys count
    lukemelas    lukemelas' efficientnet_pytorch (`_conv_stem`, `_blocks.N._expand_conv`), the
                 names of the converted TF EfficientNet(-Lite) checkpoints
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

FORMATS = ("timm", "torchvision", "smp", "lukemelas")

# lukemelas -> timm, outside the blocks
LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# inside a block with an expansion conv (timm's InvertedResidual)
LUKEMELAS_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# inside a block without one (expand ratio 1: timm's DepthwiseSeparableConv)
LUKEMELAS_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")
_WRAPPERS = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def detect_format(keys: Sequence[str]) -> str:
    """The naming of a state dict's keys (one of FORMATS)."""
    keys = [strip_wrappers(k) for k in keys]
    if any(k.startswith(("_conv_stem.", "_blocks.")) for k in keys):
        return "lukemelas"
    if any(k.startswith("encoder.") for k in keys):
        return "smp"
    if any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    return "timm"


def strip_wrappers(key: str) -> str:
    """`key` without DDP's `module.` or torch.compile's `_orig_mod.` in front."""
    for prefix in _WRAPPERS:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def from_smp(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's part of an smp state dict, in timm/torchvision names (`encoder.` and a
    `tu-` encoder's `model.` removed); the decoder and heads are not encoder weights."""
    out = {}
    for key, value in state.items():
        key = strip_wrappers(key)
        if key.startswith("encoder."):
            key = key[len("encoder.") :]
            out[key[len("model.") :] if key.startswith("model.") else key] = value
    return out


def from_lukemelas(
    state: Mapping[str, torch.Tensor], stage_depths: Sequence[int]
) -> dict[str, torch.Tensor]:
    """lukemelas names -> timm's, for a timm EfficientNet whose stages hold `stage_depths`
    blocks (lite0: 1, 2, 2, 3, 3, 4, 1). Blocks are numbered in order across the stages; a block
    without `_expand_conv` is timm's DepthwiseSeparableConv. ValueError if the counts differ."""
    state = {strip_wrappers(k): v for k, v in state.items()}
    numbers = sorted({int(m.group(1)) for k in state if (m := _BLOCK.match(k))})
    places = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    if numbers != list(range(len(places))):
        raise ValueError(
            f"the file has {len(numbers)} blocks, the encoder {len(places)} "
            f"(stages {list(stage_depths)}): another EfficientNet variant"
        )
    expanding = {
        int(m.group(1)) for k in state if (m := _BLOCK.match(k)) and m.group(2) == "_expand_conv"
    }
    out = {}
    for key, value in state.items():
        if m := _BLOCK.match(key):
            n, module, rest = int(m.group(1)), m.group(2), m.group(3)
            table = LUKEMELAS_INVERTED if n in expanding else LUKEMELAS_SEPARABLE
            s, j = places[n]
            out[f"blocks.{s}.{j}.{_rename(table, module, key)}.{rest}"] = value
        else:
            module, _, rest = key.partition(".")
            out[f"{_rename(LUKEMELAS_TOP, module, key)}.{rest}"] = value
    return out


def _rename(table: Mapping[str, str], module: str, key: str) -> str:
    if module not in table:
        raise ValueError(f"{key}: no timm name for lukemelas module {module!r}")
    return table[module]


def to_native(
    state: Mapping[str, torch.Tensor], fmt: str, stage_depths: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """A state dict in format `fmt` -> timm/torchvision names (the encoder's own, without the
    smp `model.` prefix). `stage_depths` is needed for lukemelas files."""
    if fmt == "lukemelas":
        if stage_depths is None:
            raise ValueError("lukemelas weights map only onto a timm EfficientNet (blocks.S.J)")
        return from_lukemelas(state, stage_depths)
    if fmt == "smp":
        return from_smp(state)
    if fmt in ("timm", "torchvision"):
        return {strip_wrappers(k): v for k, v in state.items()}
    raise ValueError(f"unknown weights format {fmt!r} (formats: {', '.join(FORMATS)})")
