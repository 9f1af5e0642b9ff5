"""Model registry: `create_model(name, **kw)` builds any registered net behind a 101x101 wrapper."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tgs.core.config import Config, config_keys
from tgs.core.errors import ConfigError
from tgs.models.geometry import Geometry
from tgs.models.heads import UnetHypercolumn
from tgs.models.seed_unet import SeedUNet

SMP_ARCHS = (
    "unet",
    "unetplusplus",
    "manet",
    "linknet",
    "fpn",
    "pspnet",
    "deeplabv3",
    "deeplabv3plus",
    "pan",
    "upernet",
    "segformer",
)
HYPERCOLUMN_ARCHS = ("seed_unet", "unet")
MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names `create_model` accepts, sorted."""
    return sorted(MODELS)


@register("seed_unet")
def _seed_unet(in_channels: int = 1, **kw: Any) -> nn.Module:
    # smp-only options do not apply; seed_unet's own scSE is `model_kwargs: {scse: true}`
    # (runs saved before it existed may carry decoder_attention_type and a plain net)
    for key in config_keys("smp"):
        kw.pop(key, None)
    return SeedUNet(in_channels=in_channels, **kw)


def _check_encoder(name: str) -> None:
    import segmentation_models_pytorch as smp  # optional: seed_unet runs need no smp

    if name.startswith("tu-"):
        import timm  # with smp only

        if not timm.list_models(name[3:]):
            close = difflib.get_close_matches(name[3:], timm.list_models(), n=3)
            raise ConfigError(f"unknown timm encoder {name!r}; close: {close}")
        return
    valid = smp.encoders.get_encoder_names()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=3)
        raise ConfigError(
            f"unknown encoder {name!r}; did you mean {close}? (or any timm model as 'tu-NAME'; "
            f"smp encoders: {', '.join(valid)})"
        )


def load_encoder_file(model: nn.Module, path: str | Path) -> None:
    """Load encoder weights from a local file, summing RGB first-conv weights for 1 channel."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = model.encoder.state_dict()
    for key, value in list(state.items()):
        if key in own and value.ndim == 4 and value.shape[1] != own[key].shape[1]:
            c = own[key].shape[1]
            summed = value.sum(dim=1, keepdim=True)
            state[key] = summed.repeat(1, c, 1, 1) / c if c > 1 else summed
    if not any(k in own for k in state):
        raise ConfigError(f"{path}: no key matches the encoder's weights")
    model.encoder.load_state_dict(state, strict=False)


def _smp_builder(arch: str) -> Callable[..., nn.Module]:
    def build(
        in_channels: int = 1,
        encoder: str = "resnet34",
        encoder_weights: str | None = None,
        decoder_attention_type: str | None = None,
        hypercolumn: bool = False,
        cls_head: bool = False,
        deep_supervision: bool = False,
        **kw: Any,
    ) -> nn.Module:
        import segmentation_models_pytorch as smp  # optional: seed_unet runs need no smp

        if deep_supervision:
            raise ConfigError(
                f"deep supervision (aux_weight > 0) is built for seed_unet, not {arch}"
            )
        _check_encoder(encoder)
        if decoder_attention_type is not None:
            kw["decoder_attention_type"] = decoder_attention_type
        if cls_head:
            kw["aux_params"] = {"classes": 1, "dropout": 0.2}
        if hypercolumn and arch not in HYPERCOLUMN_ARCHS:
            raise ConfigError(
                f"hypercolumn is available for {', '.join(HYPERCOLUMN_ARCHS)}, not {arch!r}"
            )
        local = encoder_weights is not None and Path(encoder_weights).suffix in (
            ".pth",
            ".pt",
        )
        model = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=None if local else encoder_weights,
            in_channels=in_channels,
            classes=1,
            **kw,
        )
        if local:
            load_encoder_file(model, encoder_weights)
        if not hypercolumn:
            return model
        default = inspect.signature(smp.Unet).parameters["decoder_channels"].default
        return UnetHypercolumn(model, kw.get("decoder_channels", default))

    return build


for _arch in SMP_ARCHS:
    MODELS[_arch] = _smp_builder(_arch)


class SegModel(nn.Module):
    """Geometry + net: (N, C, 101, 101) -> logits (N, 1, 101, 101).

    `forward(x, with_cls=True)` (or `forward_all`) also returns the empty/non-empty classifier's
    logits (N,) when the net has a classification head, else None. `with_aux=True` (training,
    deep supervision) adds the list of auxiliary decoder-scale logits, each (N, 1, 101, 101).
    Going through `forward` keeps DistributedDataParallel's gradient hooks in play.
    """

    def __init__(self, net: nn.Module, geometry: Geometry):
        super().__init__()
        self.net, self.geometry = net, geometry

    def forward(self, x: torch.Tensor, with_cls: bool = False, with_aux: bool = False):
        """Logits (N, 1, 101, 101); with_cls: (logits, class logits (N,) or None); with_aux:
        (logits, class logits or None, [auxiliary logits (N, 1, 101, 101)], [] without)."""
        out = self.net(self.geometry.forward(x))
        out = out if isinstance(out, tuple) else (out,)
        mask, label = out[0], out[1] if len(out) > 1 else None
        aux = [self.geometry.inverse(a) for a in out[2]] if len(out) > 2 else []
        mask = self.geometry.inverse(mask)
        label = None if label is None else label.reshape(-1)
        if with_aux:
            return mask, label, aux
        return (mask, label) if with_cls else mask

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self(x, with_cls=True)


def create_net(name: str, **kw: Any) -> nn.Module:
    """The raw registered net (model-size input, logits out). Unknown name -> ConfigError."""
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint} (valid: {', '.join(MODELS)})")
    return MODELS[name](**kw)


def create_model(
    name: str, geometry: str = "pad", size: int = 128, in_channels: int = 1, **kw: Any
) -> SegModel:
    """Registered net behind `geometry` ("pad" | "resize" | "none"); takes 101x101 inputs."""
    return SegModel(create_net(name, in_channels=in_channels, **kw), Geometry(geometry, size))


def model_from_config(cfg: Any, pretrained: bool = True) -> SegModel:
    """Build the model a Config describes (input channels from its depth/ramp options).

    pretrained=False builds the architecture without its encoder weights (no download, no local
    file read): for loading a checkpoint, which holds every weight."""
    return create_model(
        cfg.model,
        geometry=cfg.geometry,
        size=cfg.size,
        in_channels=1 + bool(cfg.depth_channel) + bool(cfg.ramp_channel),
        encoder=cfg.encoder,
        encoder_weights=cfg.encoder_weights if pretrained else None,
        decoder_attention_type=cfg.decoder_attention_type,
        hypercolumn=cfg.hypercolumn,
        cls_head=cfg.cls_weight > 0,
        **({"deep_supervision": True} if cfg.aux_weight > 0 else {}),
        **cfg.model_kwargs,
    )


def smp_needed_by(cfg: Config, training: bool = False) -> str | None:
    """What in `cfg` imports segmentation_models_pytorch (Kaggle's image lacks it): an smp model
    or, when `training`, an smp loss term; None when nothing does."""
    # the losses module only here: the offline inference kernel imports this one, never losses
    from tgs.models.losses import SMP_LOSSES, loss_terms

    if cfg.model in SMP_ARCHS:
        return f"model {cfg.model!r}"
    specs = [cfg.loss] + ([cfg.stage2_loss] if cfg.stage2_epochs else []) if training else []
    for spec in specs:
        smp_terms = [name for _, name in loss_terms(spec) if name in SMP_LOSSES]
        if smp_terms:
            return f"loss {spec!r} ({', '.join(smp_terms)})"
    return None
