"""A config checked before any work: every name resolved, every value in range, and the settings
that would do nothing where they are named."""

from __future__ import annotations

import logging
from dataclasses import fields

from tgs.core.config import SMP_ONLY, Config, config_keys
from tgs.core.errors import ConfigError, TGSError
from tgs.models.losses import create_loss
from tgs.models.registry import is_smp, model_from_config

log = logging.getLogger(__name__)


def validate_config(cfg: Config) -> None:
    """Resolve every name in `cfg` (model, encoder, loss) and check what no single key's
    declaration can (`Config` checks each key's type, range and allowed values when it is
    made): settings that do not combine. Warns of settings that do nothing."""
    if cfg.stage2_epochs and cfg.snapshots:
        raise TGSError("stage2_epochs and snapshots do not combine (snapshots are stage-1 cycles)")
    if cfg.stage2_epochs:
        create_loss(cfg.stage2_loss)
    if cfg.snapshots and cfg.scheduler != "cosine_restarts":
        raise TGSError("snapshots need scheduler: cosine_restarts (a snapshot per cycle)")
    if cfg.low_size and not (16 <= cfg.low_size and 0 < cfg.low_share <= 1):
        raise TGSError(
            f"progressive resizing needs low_size >= 16 and 0 < low_share <= 1 "
            f"(got {cfg.low_size}, {cfg.low_share})"
        )
    create_loss(cfg.loss)
    if cfg.gate == "mean" and cfg.cls_weight <= 0:
        raise ConfigError(
            "gate: mean averages the classifier head with the mask: set cls_weight > 0"
        )
    _check_fine_tuning(cfg)
    model_from_config(cfg, pretrained=False)
    for said in no_effect(cfg):
        log.warning("config: %s", said)


def _check_fine_tuning(cfg: Config) -> None:
    if cfg.freeze_encoder_epochs >= cfg.epochs + cfg.stage2_epochs:
        raise ConfigError(
            f"freeze_encoder_epochs={cfg.freeze_encoder_epochs} freezes every epoch "
            f"(epochs {cfg.epochs + cfg.stage2_epochs})"
        )
    if (cfg.input_mean is None) != (cfg.input_std is None):
        raise ConfigError("set input_mean and input_std together (or neither: the weights' own)")


_DEFAULTS = {f.name: f.default for f in fields(Config)}


def _changed(cfg: Config, key: str) -> bool:
    return getattr(cfg, key) != _DEFAULTS[key]


def no_effect(cfg: Config) -> list[str]:
    """The settings of `cfg` that change nothing where they stand (each with why). A shipped
    config has none (tests/train/test_fine_tuning.py); `tgs run` warns of each."""
    out = []
    if not is_smp(cfg.model):
        out += [
            f"{k} is an option of smp models, not {cfg.model}"
            for k in config_keys(SMP_ONLY)
            if _changed(cfg, k)
        ]
    if cfg.gate == "head" and cfg.cls_weight <= 0:
        out.append(
            "gate: head thresholds the classifier head, but cls_weight is 0 (no head): "
            "no empty gate is searched; set cls_weight > 0, or gate: mask_max"
        )
    rules = [  # (key, when it does nothing, why)
        ("momentum", cfg.optimizer != "sgd", "momentum is SGD's (optimizer: adamw)"),
        ("cycle_epochs", cfg.scheduler != "cosine_restarts", "cycle_epochs: not cosine_restarts"),
        ("low_share", not cfg.low_size, "low_share needs low_size (progressive resizing)"),
        ("stage2_loss", not cfg.stage2_epochs, "stage2_loss needs stage2_epochs"),
        ("stage2_lr", not cfg.stage2_epochs, "stage2_lr needs stage2_epochs"),
        ("min_lr", cfg.scheduler == "none", "min_lr needs a scheduler"),
        ("num_workers", cfg.data_on_device, "num_workers: data_on_device batches without a loader"),
        ("replan_after", not cfg.budget_minutes, "replan_after refits a budget (budget_minutes 0)"),
    ]
    out += [why for key, idle, why in rules if idle and _changed(cfg, key)]
    augment = ("hflip", "affine", "brightness_contrast")
    if not cfg.augment:
        out += [f"{k}: augment is false" for k in augment if _changed(cfg, k)]
    return out
