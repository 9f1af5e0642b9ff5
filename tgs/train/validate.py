"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

from tgs.core.config import Config
from tgs.core.errors import ConfigError, TGSError
from tgs.models.losses import create_loss
from tgs.models.registry import model_from_config
from tgs.post.rule import check_gate
from tgs.predict.tta import check_tta
from tgs.train.schedule import OPTIMIZERS, SCHEDULERS


def validate_config(cfg: Config) -> None:
    """Resolve every name in `cfg` (model, encoder, loss, optimizer, ...) before any work."""
    if cfg.optimizer not in OPTIMIZERS:
        raise TGSError(f"unknown optimizer {cfg.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")
    if cfg.scheduler not in SCHEDULERS:
        raise TGSError(f"unknown scheduler {cfg.scheduler!r} (valid: {', '.join(SCHEDULERS)})")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TGSError(f"epochs and batch_size must be >= 1 (got {cfg.epochs}, {cfg.batch_size})")
    if cfg.stage2_epochs < 0:
        raise TGSError(f"stage2_epochs must be >= 0, got {cfg.stage2_epochs}")
    if cfg.stage2_epochs and cfg.snapshots:
        raise TGSError("stage2_epochs and snapshots do not combine (snapshots are stage-1 cycles)")
    if cfg.stage2_epochs:
        create_loss(cfg.stage2_loss)
    if cfg.snapshots and cfg.scheduler != "cosine_restarts":
        raise TGSError("snapshots need scheduler: cosine_restarts (a snapshot per cycle)")
    if cfg.jobs < 1 or cfg.nproc < 1:
        raise TGSError(f"jobs and nproc must be >= 1 (got {cfg.jobs}, {cfg.nproc})")
    if cfg.budget_minutes < 0 or cfg.max_minutes < 0 or cfg.replan_after < 0:
        raise TGSError("budget_minutes, max_minutes and replan_after must be >= 0")
    if not 0 <= cfg.ema < 1:
        raise TGSError(f"ema is a decay in [0, 1), got {cfg.ema}")
    if cfg.aux_weight < 0:
        raise TGSError(f"aux_weight must be >= 0, got {cfg.aux_weight}")
    if cfg.low_size and not (16 <= cfg.low_size and 0 < cfg.low_share <= 1):
        raise TGSError(
            f"progressive resizing needs low_size >= 16 and 0 < low_share <= 1 "
            f"(got {cfg.low_size}, {cfg.low_share})"
        )
    create_loss(cfg.loss)
    check_tta(cfg.tta)
    if check_gate(cfg.gate) == "mean" and cfg.cls_weight <= 0:
        raise ConfigError(
            "gate: mean averages the classifier head with the mask: set cls_weight > 0"
        )
    model_from_config(cfg, pretrained=False)
