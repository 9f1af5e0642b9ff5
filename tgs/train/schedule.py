"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

from dataclasses import replace

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn

from tgs.core.config import Config, key_choices
from tgs.core.errors import TGSError
from tgs.models.registry import encoder_of
from tgs.run.records import FoldRefit

OPTIMIZERS = key_choices("optimizer")
SCHEDULERS = key_choices("scheduler")


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """timm's optimizer factory: AdamW or SGD with momentum (not Nesterov), no weight decay on
    norm layers and biases; the encoder's groups at `encoder_lr_mult` x lr (their own initial
    lr, which timm's schedulers and torch's plateau both scale from)."""
    if cfg.optimizer not in OPTIMIZERS:
        raise TGSError(f"unknown optimizer {cfg.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")
    kw = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    return create_optimizer_v2(
        param_groups(model, cfg.lr, cfg.weight_decay, cfg.encoder_lr_mult),
        opt="momentum" if cfg.optimizer == "sgd" else "adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        **kw,
    )


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, encoder_lr_mult: float = 1.0
) -> list[dict]:
    """Decay / no-decay groups (biases and 1-d norm weights: no decay), split into encoder and
    the rest when the encoder learns at its own rate; empty groups left out."""
    encoder = set()
    if encoder_lr_mult != 1.0:
        encoder = {id(p) for p in encoder_of(model).parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for _, p in model.named_parameters():
        if p.requires_grad:
            key = (id(p) in encoder, p.ndim > 1)
            groups.setdefault(key, []).append(p)
    return [
        {
            "params": params,
            "weight_decay": weight_decay if decays else 0.0,
            "lr": lr * (encoder_lr_mult if in_encoder else 1.0),
        }
        for (in_encoder, decays), params in sorted(groups.items())
    ]


def total_epochs(cfg: Config) -> int:
    """Epochs of the whole run: stage 1 (`epochs`) + stage 2 (`stage2_epochs`)."""
    return cfg.epochs + cfg.stage2_epochs


def stage2_config(cfg: Config) -> Config:
    """The optimisation settings of stage 2: its loss and lr, cosine over its epochs."""
    return replace(
        cfg,
        loss=cfg.stage2_loss,
        lr=cfg.stage2_lr,
        epochs=cfg.stage2_epochs,
        scheduler="cosine",
        warmup_epochs=0,
    )


def low_epochs(cfg: Config) -> int:
    """Stage-1 epochs trained at `low_size` (progressive resizing); 0 without it."""
    return round(cfg.low_share * cfg.epochs) if cfg.low_size else 0


def cycle_epochs(cfg: Config) -> int:
    """Length of one warm-restart cycle (cosine_restarts); the whole run otherwise."""
    return (
        cfg.cycle_epochs if cfg.scheduler == "cosine_restarts" and cfg.cycle_epochs else cfg.epochs
    )


class Plateau:
    """torch's ReduceLROnPlateau (halve after 3 epochs without a better score; its state is
    saved for resume, unlike timm's deprecated one) behind the timm scheduler interface."""

    def __init__(self, opt: torch.optim.Optimizer, min_lr: float):
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=3, min_lr=min_lr
        )

    def step_update(self, num_updates: int) -> None:
        pass

    def step(self, epoch: int, metric: float) -> None:
        self.inner.step(metric)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class Stretched:
    """A step-updated schedule continued over a new length (a budget refit): from update `at`
    on, what was left of `inner` (up to update `old_end`) is stretched over `new_end - at`
    updates, so the learning rate goes on from where it is and still ends where it did."""

    def __init__(self, inner, at: int, old_end: int, new_end: int):
        if new_end <= at:
            raise ValueError(f"a stretched schedule must go on past update {at} (to {new_end})")
        self.inner, self.at, self.old_end, self.new_end = inner, at, old_end, new_end

    def step_update(self, num_updates: int) -> None:
        t = num_updates
        if t > self.at:
            t = self.at + (t - self.at) * (self.old_end - self.at) / (self.new_end - self.at)
        self.inner.step_update(t)

    def step(self, epoch: int, metric: float | None = None) -> None:
        self.inner.step(epoch, metric)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def stage1_scheduler(cfg: Config, opt: torch.optim.Optimizer, steps: int, refits: list[FoldRefit]):
    """Stage 1's schedule for `cfg`, whose epochs budget refits (`tgs.budget.plan.replan`,
    oldest first) have changed: one cosine, as planned before the first refit, stretched at
    each refit over the new length (a warm-up not over at a refit is stretched with it, so the
    refit's `warmup_epochs` is only what `layout` would give). Other schedulers (and refits
    older than the planned layout) are laid out over `cfg` as they are."""
    if cfg.scheduler != "cosine" or not refits or refits[0].from_epochs is None:
        return build_scheduler(cfg, opt, steps)
    first = refits[0]
    planned = replace(cfg, epochs=first.from_epochs, warmup_epochs=first.from_warmup)
    sched = build_scheduler(planned, opt, steps)
    for r in refits:
        sched = Stretched(sched, r.after_epochs * steps, r.from_epochs * steps, r.epochs * steps)
    return sched


def steps_per_epoch(n_train: int, cfg: Config, world: int = 1) -> int:
    """Optimizer steps in one epoch of `n_train` images (as epoch_loader / DeviceBatches batch
    them: the last partial batch is dropped when there is more than one batch)."""
    shard = n_train // world if world > 1 else n_train
    steps = shard // cfg.batch_size if shard > cfg.batch_size else 1
    return min(steps, cfg.max_train_batches) if cfg.max_train_batches else max(1, steps)


def build_scheduler(cfg: Config, opt: torch.optim.Optimizer, steps: int):
    """timm's scheduler factory, updated every optimizer step (`step_update`) over `cfg.epochs`
    of `steps` each, with `warmup_epochs` of linear warm-up; plateau is stepped per epoch with
    the validation score. None for `scheduler: none`."""
    if cfg.scheduler not in SCHEDULERS:
        raise TGSError(f"unknown scheduler {cfg.scheduler!r} (valid: {', '.join(SCHEDULERS)})")
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "plateau":
        return Plateau(opt, cfg.min_lr)
    common = dict(min_lr=cfg.min_lr, warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.lr * 0.01)
    cycle = cycle_epochs(cfg)
    sched, _ = create_scheduler_v2(
        opt,
        "cosine",
        num_epochs=cycle,
        cycle_limit=-(-cfg.epochs // cycle),  # warm restarts: one cycle per cycle_epochs
        cycle_decay=1.0,
        step_on_epochs=False,
        updates_per_epoch=steps,
        **common,
    )
    return sched
