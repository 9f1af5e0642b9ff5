"""Hooks of one fold's training: what happens around the loop, not the loop itself.

`FoldTrainer` calls each callback at fixed points (in list order); `config_callbacks(cfg)` is
what a config asks for (EMA weights, cycle snapshots, the validation cadence, `max_minutes`,
a frozen encoder); `tgs.budget.refit.fold_callbacks` adds the budget refit and is the one place
that decides a fold's callbacks. A callback reads the trainer (`TrainerView`) and changes
training only through its `reschedule`. A callback with a `state_key` is saved in last.pt under
that key and restored on resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tgs.core.config import Config
from tgs.models.registry import encoder_of
from tgs.run.folder import Run
from tgs.run.layout import FoldPaths
from tgs.run.records import FoldRefit
from tgs.train.distributed import Dist
from tgs.train.history import EpochRow
from tgs.train.schedule import cycle_epochs

log = logging.getLogger(__name__)


class TrainerView(Protocol):
    """What a callback sees of `tgs.train.trainer.FoldTrainer` (read only), and the one way it
    changes training: `reschedule` (a budget refit)."""

    cfg: Config  # the config now training (a refit changes its planned keys)
    run: Run
    fold: int
    paths: FoldPaths  # the fold's files
    dist: Dist
    model: torch.nn.Module  # the trained weights (not DDP-wrapped)
    history: list[EpochRow]  # one row per finished epoch
    refits: list[FoldRefit]  # the fold's budget refits so far
    startup: float  # seconds from the fold's launch to its first epoch

    def save_model(self, path: Path, epoch: int, score: float) -> None: ...

    def reschedule(self, refit: FoldRefit, after_epoch: int) -> None: ...


class Callback:
    """Does nothing at every hook; subclasses override what they need."""

    state_key: str | None = None  # last.pt key of `state_dict()` (None: nothing to resume)

    def setup(self, t: TrainerView) -> None:
        """Once, when the trainer has built its model and optimizer (before any resume)."""

    def on_fit_start(self, t: TrainerView) -> None:
        """When `fit` starts its first (or resumed) epoch."""

    def on_epoch_start(self, t: TrainerView, epoch: int) -> None:
        """Before epoch `epoch` (0-based) trains."""

    def on_step(self, t: TrainerView) -> None:
        """After each optimizer step (and the learning-rate schedule's step)."""

    def wants_validation(self, t: TrainerView, epoch: int) -> bool:
        """Validate after `epoch` (0-based)? The trainer always validates at each stage's end."""
        return False

    def on_epoch_end(self, t: TrainerView, epoch: int) -> None:
        """After the epoch's row is in `t.history` and `t.best` is updated, before last.pt."""

    def on_save(self, t: TrainerView, epoch: int, score: float) -> None:
        """Rank 0, when the epoch's checkpoints are written (after best.pt, before last.pt)."""

    def should_stop(self, t: TrainerView, epoch: int) -> bool:
        """Stop after `epoch` (0-based)? The trainer validates a stopped epoch if it was not."""
        return False

    def eval_model(self) -> torch.nn.Module | None:
        """The weights to validate, save and predict with instead of the trained ones."""
        return None

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None:
        """Restore `state_dict()` (as saved in last.pt)."""


class EMA(Callback):
    """An exponential moving average of the weights (decay per step), updated after every
    step; validated, saved and used to predict in place of the trained weights."""

    state_key = "ema"

    def __init__(self, decay: float):
        self.decay, self.average = decay, None

    def setup(self, t: TrainerView) -> None:
        avg = get_ema_multi_avg_fn(self.decay)
        self.average = AveragedModel(t.model, multi_avg_fn=avg, use_buffers=True)

    def on_step(self, t: TrainerView) -> None:
        self.average.update_parameters(t.model)

    def eval_model(self) -> torch.nn.Module:
        return self.average.module

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)


class Snapshots(Callback):
    """A snapshot checkpoint at the end of each learning-rate cycle (`cycle_epochs`); the OOF
    and the test predictions average over them."""

    def on_save(self, t: TrainerView, epoch: int, score: float) -> None:
        cycle = cycle_epochs(t.cfg)  # the current config's: a budget refit may change it
        if (epoch + 1) % cycle == 0:
            t.save_model(t.paths.snapshot((epoch + 1) // cycle), epoch, score)


class ValidateEvery(Callback):
    """Validate every `every` epochs (plateau's patience counts validated epochs)."""

    def __init__(self, every: int):
        self.every = max(1, every)

    def wants_validation(self, t: TrainerView, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0


class TimeLimit(Callback):
    """Stop before an epoch (as long as the last one) would pass `minutes` of training."""

    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.time):
        self.minutes, self.clock = minutes, clock
        self.started = clock()

    def on_fit_start(self, t: TrainerView) -> None:
        self.started = self.clock()

    def should_stop(self, t: TrainerView, epoch: int) -> bool:
        elapsed, last = self.clock() - self.started, t.history[-1].seconds
        if elapsed + last <= 60 * self.minutes:
            return False
        log.info("fold %d: stopping after epoch %d: max_minutes", t.fold, epoch + 1)
        return True


class FreezeEncoder(Callback):
    """The encoder's weights frozen for the first `epochs` epochs (no gradient, no update; its
    BatchNorm statistics still adapt to the seismic images), then trained. Stateless: a resumed
    fold freezes or not by its epoch."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_epoch_start(self, t: TrainerView, epoch: int) -> None:
        for p in encoder_of(t.model).parameters():
            p.requires_grad_(epoch >= self.epochs)


def config_callbacks(cfg: Config) -> list[Callback]:
    """The callbacks `cfg` asks for: ValidateEvery always; EMA, Snapshots, TimeLimit and
    FreezeEncoder when `ema`, `snapshots`, `max_minutes` and `freeze_encoder_epochs` are set."""
    out: list[Callback] = [ValidateEvery(cfg.val_every)]
    if cfg.freeze_encoder_epochs:
        out.append(FreezeEncoder(cfg.freeze_encoder_epochs))
    if cfg.ema > 0:
        out.append(EMA(cfg.ema))
    if cfg.snapshots:
        out.append(Snapshots())
    if cfg.max_minutes:
        out.append(TimeLimit(cfg.max_minutes))
    return out
