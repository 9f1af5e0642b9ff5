"""The budget refit as a training callback: once a budgeted fold has timed its first real
epochs, its epochs are refit to what they took (`tgs.budget.plan.replan`) and the trainer lays
the rest out again over the new length (`reschedule`). `fold_callbacks` decides every fold's
callbacks: training, the budget probe and the tests all take theirs from it."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from tgs.budget.plan import replan
from tgs.core.config import Config
from tgs.run.records import FoldRefit
from tgs.train.callbacks import Callback, TrainerView, config_callbacks
from tgs.train.distributed import gather_objects
from tgs.train.schedule import low_epochs

log = logging.getLogger(__name__)


class BudgetRefit(Callback):
    """Refit a budgeted fold's epochs when `refit_due`; saved as foldK/plan.json before
    last.pt, so a resumed fold finds the refit schedule. Rank 0's refit is every rank's."""

    def on_epoch_end(self, t: TrainerView, epoch: int) -> None:
        plan = t.run.plans.plan() if refit_due(t.cfg, t.refits, epoch + 1) else None
        if plan is None:
            return
        seconds = [row.seconds for row in t.history]
        saves = [row.save_seconds for row in t.history if row.save_seconds is not None]
        new = replan(t.cfg, plan, seconds, _median(saves), t.startup)
        new = replace(new, saves_timed=bool(saves))  # False: no save timed yet (replan_after 1)
        new = gather_objects(t.dist, new)[0]
        t.reschedule(new, epoch)
        if t.dist.main:
            t.run.plans.write_refits(t.fold, t.refits)
            _log_refit(t.fold, new, t.paths.refits)


def refit_due(cfg: Config, refits: list[FoldRefit], n: int) -> bool:
    """After `n` epochs of a budgeted stage 1 with `refits` so far: the first refit once
    `replan_after` epochs have run; with progressive resizing a second once `replan_after`
    full-size epochs have (unless the first was already on full-size epochs, or predates the
    second refit)."""
    if not (cfg.budget_minutes and cfg.replan_after) or n >= cfg.epochs:
        return False  # no budget, or stage 1 is over: nothing left to lay out
    if not refits:  # timed on epochs that train the encoder (frozen ones cost less)
        return n >= cfg.freeze_encoder_epochs + cfg.replan_after
    first, low = refits[0], low_epochs(cfg)
    return (
        len(refits) == 1
        and bool(low)
        and n >= low + cfg.replan_after
        and first.from_epochs is not None  # older records: refit once, as then
        and not first.on_full_size
    )


def budget_callbacks(cfg: Config) -> list[Callback]:
    """[BudgetRefit()] for a budgeted config that refits (`replan_after` > 0), else []."""
    return [BudgetRefit()] if cfg.budget_minutes and cfg.replan_after else []


def fold_callbacks(cfg: Config) -> list[Callback]:
    """A fold's callbacks: what `cfg` asks for (`config_callbacks`), then the budget refit."""
    return config_callbacks(cfg) + budget_callbacks(cfg)


def _median(values: list[float]) -> float:
    """The median of `values` (0.0 for none)."""
    return float(np.median(values)) if values else 0.0


def _log_refit(fold: int, new: FoldRefit, path: Path) -> None:
    log.info(
        "fold %d: %d real epochs (%s) took %.2fx the probe's estimate -> %d epochs (+%d stage "
        "2) instead of %d (%s)",
        fold,
        new.after_epochs,
        "timed on the full-size ones" if new.on_full_size else "timed",
        new.ratio,
        new.epochs,
        new.stage2_epochs,
        new.planned_epochs,
        path,
    )
