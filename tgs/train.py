"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tgs.config import Config
from tgs.data.dataset import SaltDataset
from tgs.errors import ConfigError, TGSError
from tgs.inference import Runtime
from tgs.losses import create_loss
from tgs.models import model_from_config
from tgs.thresholds import check_gate
from tgs.tta import check_tta


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "cosine_restarts", "plateau", "none")


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


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """timm's optimizer factory: AdamW or SGD with momentum (not Nesterov), no weight decay on
    norm layers and biases."""
    from timm.optim import create_optimizer_v2

    if cfg.optimizer not in OPTIMIZERS:
        raise TGSError(f"unknown optimizer {cfg.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")
    kw = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    return create_optimizer_v2(
        model,
        opt="momentum" if cfg.optimizer == "sgd" else "adamw",
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        filter_bias_and_bn=True,
        **kw,
    )


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


def stage1_scheduler(cfg: Config, opt: torch.optim.Optimizer, steps: int, refits: list[dict]):
    """Stage 1's schedule for `cfg`, whose epochs budget refits (`tgs.budget.replan` records,
    oldest first) have changed: one cosine, as planned before the first refit, stretched at
    each refit over the new length (a warm-up not over at a refit is stretched with it, so the
    refit's `warmup_epochs` is only what `layout` would give). Other schedulers (and records
    without the planned layout) are laid out over `cfg` as they are."""
    if cfg.scheduler != "cosine" or not refits or "from_epochs" not in refits[0]:
        return build_scheduler(cfg, opt, steps)
    planned = {"epochs": refits[0]["from_epochs"], "warmup_epochs": refits[0]["from_warmup"]}
    sched = build_scheduler(replace(cfg, **planned), opt, steps)
    for r in refits:
        at, old_end, new_end = (r[k] * steps for k in ("after_epochs", "from_epochs", "epochs"))
        sched = Stretched(sched, at, old_end, new_end)
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
    from timm.scheduler import create_scheduler_v2

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


class Criterion(nn.Module):
    """Mask loss on logits (N, 1, H, W) + cls_weight * BCE of the salt-present logit (N,)
    + aux_weight * the mean over auxiliary (deep supervision) logits of the mask loss on the
    images with salt only (the empty/non-empty decision is left to the main mask and the head)."""

    def __init__(self, mask_loss: nn.Module, cls_weight: float = 0.0, aux_weight: float = 0.0):
        super().__init__()
        self.mask_loss, self.cls_weight, self.aux_weight = mask_loss, cls_weight, aux_weight

    @property
    def wants_aux(self) -> bool:
        return self.aux_weight > 0

    def forward(
        self,
        mask: torch.Tensor,
        cls: torch.Tensor | None,
        y: torch.Tensor,
        aux: list[torch.Tensor] | None = None,
    ):
        loss = self.mask_loss(mask.float(), y)
        present = y.flatten(1).amax(dim=1)
        if cls is not None and self.cls_weight > 0:
            loss = loss + self.cls_weight * F.binary_cross_entropy_with_logits(cls.float(), present)
        salt = present > 0
        if aux and self.aux_weight > 0 and salt.any():
            parts = [self.mask_loss(a[salt].float(), y[salt]) for a in aux]
            loss = loss + self.aux_weight * torch.stack(parts).mean()
        return loss


def train_one_epoch(
    model, loader, criterion, opt, scaler, rt: Runtime, desc: str, on_step=None, quiet=False
) -> float:
    """One pass over `loader`; returns the mean loss. Raises TGSError on a non-finite loss.

    on_step: called after every optimizer step (e.g. to update an EMA of the weights)."""
    model.train()
    total, n = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, mininterval=1.0, disable=quiet)
    for x, y in bar:
        x, y = rt.to_input(x), y.to(rt.device, non_blocking=True)
        with rt.autocast():
            if criterion.wants_aux:
                mask, cls, aux = model(x, with_cls=True, with_aux=True)
                loss = criterion(mask, cls, y, aux)
            else:
                loss = criterion(*model(x, with_cls=True), y)
        if not torch.isfinite(loss):
            raise TGSError(
                f"{desc}: loss became {loss.item()} (lower lr?); last good checkpoint kept"
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if on_step is not None:
            on_step()
        total += loss.item() * len(x)
        n += len(x)
        bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)
    return total / max(n, 1)


def _seed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own deterministic augmentation stream."""
    info = torch.utils.data.get_worker_info()
    aug = getattr(info.dataset, "augment", None)
    if aug is not None:
        aug.set_random_seed(torch.initial_seed() % 2**31)


def epoch_loader(ds: SaltDataset, cfg: Config, epoch: int, rt: Runtime, d=None) -> DataLoader:
    """A loader whose order and augmentation depend only on (seed, epoch): resumable.

    Distributed (`d.enabled`): a DistributedSampler with set_epoch gives each rank a disjoint
    shard; each rank's augmentation stream is seeded by (seed, epoch, rank)."""
    seed = cfg.seed * 1000 + epoch
    sampler = None
    if d is not None and d.enabled:
        from torch.utils.data.distributed import DistributedSampler

        # drop_last: no padding duplicates, so ranks see disjoint samples (a shuffled few rest)
        sampler = DistributedSampler(
            ds, d.world, d.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        seed = seed * 100 + d.rank
    if ds.augment is not None:
        ds.augment.set_random_seed(seed)
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(ds) > cfg.batch_size * (d.world if d is not None else 1),
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_seed_worker,
        pin_memory=rt.device.type == "cuda",
        persistent_workers=False,
    )


def fold_indices(ids: list[str], folds, fold: int) -> tuple[np.ndarray, np.ndarray]:
    fold_of = folds.set_index("id").loc[ids, "fold"].to_numpy()
    train_idx, val_idx = (
        np.flatnonzero(fold_of != fold),
        np.flatnonzero(fold_of == fold),
    )
    if not len(val_idx) or not len(train_idx):
        raise TGSError(f"fold {fold} is empty or holds everything (folds: {sorted(set(fold_of))})")
    return train_idx, val_idx


def take(loader, n: int):
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch
