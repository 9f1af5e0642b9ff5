"""Budgeted training: fit a whole run (every fold, the search and predict) into `budget_minutes`
on the machine at hand.

Before the first fold, a timed probe trains a few steps of the real model and validates once;
from the measured seconds per epoch the plan fixes the number of epochs, and the schedule
(warm-up, cosine, cycles, a second stage) is laid out over that length, so every fold finishes
its schedule instead of being cut mid-way. The plan is saved as RUN/plan.json; resuming keeps it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace

from tgs.core.config import Config
from tgs.run.records import FoldRefit, Measured, Plan
from tgs.train.schedule import low_epochs

log = logging.getLogger(__name__)


SAFETY = 0.92  # share of a fold's time the planned epochs may use (the rest absorbs noise)


@dataclass(frozen=True)
class Layout:
    """A schedule's length as the config's planned keys say it (`low_share`: a refit keeping
    the low-resolution epochs trained; None: the config's)."""

    epochs: int
    stage2_epochs: int
    warmup_epochs: int
    cycle_epochs: int
    low_share: float | None = None


def plan_epochs(
    cfg: Config,
    measured: Measured,
    seconds: float,
    *,
    waves: int,
    n_test: int,
    n_models: int | None = None,
    world: int = 1,
) -> Plan:
    """The plan for `waves` rounds of folds (folds trained at once share a round) in `seconds`:
    epochs (stage 1 + stage 2 in the config's ratio; a whole number of restart cycles), warm-up
    scaled alike (with progressive resizing an epoch costs the mix of low and full-size steps);
    the OOF passes and predict over `n_models` folds (default `waves`) reserved.
    `world`: DDP ranks sharing each epoch's steps."""
    n_models = n_models or waves
    m = measured
    steps = -(-m.steps_per_epoch // max(1, world))
    val_s = m.val_seconds / max(1, cfg.val_every)
    step_s = m.step_seconds
    if cfg.low_size and m.low_step_seconds is not None:  # progressive resizing: mean step
        share = low_epochs(cfg) / (cfg.epochs + cfg.stage2_epochs)
        step_s = share * m.low_step_seconds + (1 - share) * step_s
    epoch_s = step_s * steps + val_s
    per_image = m.val_seconds / max(1, m.n_val)  # one view, one model
    views = 2 if cfg.tta == "hflip" else 1
    snaps = max(1, math.ceil(cfg.epochs / cfg.cycle_epochs)) if cfg.snapshots else 1
    oof_s = per_image * m.n_val * views * snaps
    predict_s = per_image * n_test * views * snaps * n_models
    reserve = waves * oof_s + predict_s + 10.0  # + the search
    per_fold = max(0.0, (seconds - reserve) / max(1, waves))
    frozen = cfg.freeze_encoder_epochs if m.frozen_step_seconds is not None else 0
    frozen_s = frozen * ((m.frozen_step_seconds or 0.0) * steps + val_s)
    total = frozen + max(1, int((SAFETY * per_fold - frozen_s) / epoch_s))
    new = layout(cfg, total)
    return Plan(
        budget_minutes=cfg.budget_minutes,
        seconds_for_folds=round(seconds, 1),
        waves=waves,
        n_models=n_models,
        world=world,
        measured=m.rounded(4),
        epoch_seconds=round(epoch_s, 3),
        reserve_seconds=round(reserve, 1),
        fold_seconds=round(per_fold, 1),
        epochs=new.epochs,
        stage2_epochs=new.stage2_epochs,
        warmup_epochs=new.warmup_epochs,
        cycle_epochs=new.cycle_epochs,
        config_epochs=cfg.epochs + cfg.stage2_epochs,
    )


def layout(cfg: Config, total: int, min_stage1: int = 1) -> Layout:
    """`total` epochs laid out as `cfg` lays out its own: stage 2 in the config's ratio, a whole
    number of restart cycles, warm-up scaled alike; stage 1 keeps at least `min_stage1` epochs
    (a refit never ends stage 1 before the epochs already trained)."""
    want = cfg.epochs + cfg.stage2_epochs
    stage2 = round(total * cfg.stage2_epochs / want) if cfg.stage2_epochs else 0
    stage2 = max(0, min(stage2, total - min_stage1))
    epochs, cycle = total - stage2, 0
    if cfg.scheduler == "cosine_restarts" and cfg.cycle_epochs:  # whole cycles only
        cycles = max(1, round(cfg.epochs / cfg.cycle_epochs))
        cycle = max(1, epochs // cycles, -(-min_stage1 // cycles))
        epochs = cycle * cycles if epochs >= cycles or min_stage1 > 1 else epochs
    scale = epochs / cfg.epochs
    return Layout(
        epochs=epochs,
        stage2_epochs=stage2,
        warmup_epochs=min(epochs - 1, round(cfg.warmup_epochs * scale)) if epochs > 1 else 0,
        cycle_epochs=cycle or cfg.cycle_epochs,
    )


def _planned_epoch_seconds(cfg: Config, plan: Plan, epoch: int) -> float:
    """What the probe said epoch `epoch` (0-based) of `cfg`'s schedule costs: its steps at the
    epoch's resolution (progressive resizing) plus the validation share."""
    m = plan.measured
    steps = -(-m.steps_per_epoch // max(1, plan.world))
    low = epoch < low_epochs(cfg) and m.low_step_seconds is not None
    step_s = m.low_step_seconds if low else m.step_seconds
    if epoch < cfg.freeze_encoder_epochs and m.frozen_step_seconds is not None:
        step_s = m.frozen_step_seconds
    return step_s * steps + m.val_seconds / max(1, cfg.val_every)


def replan(
    cfg: Config, plan: Plan, seconds: list[float], overhead: float = 0.0, startup: float = 0.0
) -> FoldRefit:
    """Refit one fold's schedule to the wall times of the epochs it has run (`seconds`).

    The probe times a few steps while the run starts and is off by some percent either way;
    the real epochs say by how much (`ratio`, real over probed; the first epoch timed, which
    also starts the loader workers or a new input size, only when it is the only one). The fold
    keeps the epochs it has trained and gets as many more as fit SAFETY x what is left of its
    `fold_seconds`, at the probe's relative costs (low vs full resolution) scaled by the ratio.
    What an epoch's own time leaves out counts too: `overhead`, seconds per epoch outside it
    (the checkpoint saved after each epoch: 0.3-1 s on a GPU, where epochs take 2-4 s), and
    `startup`, the fold's one-off seconds before its first epoch (a child process's imports,
    data, model); both are spent already for the epochs done, and `overhead` again per epoch.
    With progressive resizing a fold is refit twice: on its first epochs (low resolution), and
    on its first full-size ones, which run at another ratio (`on_full_size`; the low-resolution
    epochs then stay as many as were trained). `cfg` is the planned config now training;
    returns its new layout plus what the decision was made on."""
    done = len(seconds)
    spent = float(sum(seconds)) + overhead * done + startup
    low = low_epochs(cfg)
    on_full = bool(cfg.low_size) and low < done
    start = low if on_full else 0  # the ratio is taken on epochs of one resolution,
    if done > cfg.freeze_encoder_epochs:  # with the encoder training
        start = max(start, cfg.freeze_encoder_epochs)
    timed = range(start + 1, done) if done - start > 1 else range(start, done)
    probed = sum(_planned_epoch_seconds(cfg, plan, e) for e in timed)
    ratio = max(sum(seconds[e] for e in timed), 1e-6) / max(probed, 1e-6)
    decided_on = dict(
        after_epochs=done,
        on_full_size=on_full,
        seconds_so_far=round(spent, 1),
        ratio=round(ratio, 4),
        overhead_seconds=round(overhead, 3),
        startup_seconds=round(startup, 1),
        fold_seconds=plan.fold_seconds,
        planned_epochs=cfg.epochs + cfg.stage2_epochs,
        from_epochs=cfg.epochs,  # the stage-1 schedule it continues (`stage1_scheduler`)
        from_warmup=cfg.warmup_epochs,
    )
    if cfg.low_size and low == done:  # no full-size epoch timed yet to price the rest with
        kept = Layout(cfg.epochs, cfg.stage2_epochs, cfg.warmup_epochs, cfg.cycle_epochs)
        return FoldRefit(**asdict(kept), **decided_on, kept="no full-size epoch timed yet")
    keep_low = low if on_full else None
    room, total = SAFETY * (plan.fold_seconds - spent), done + 1  # one more at least
    limit = 10 * max(cfg.epochs + cfg.stage2_epochs, total)  # a probe 10x off is broken
    costs = {"keep_low": keep_low, "ratio": ratio, "overhead": overhead}
    while total < limit and _cost(cfg, plan, done, total + 1, **costs) <= room:
        total += 1
    return FoldRefit(**asdict(_refit_layout(cfg, total, done, keep_low)), **decided_on)


def _refit_layout(cfg: Config, total: int, done: int, keep_low: int | None = None) -> Layout:
    """`layout` for a refit after `done` epochs: stage 1 outlives them, a warm-up they have
    already finished stays as it was, and `keep_low` (when given) low-resolution epochs stay
    exactly that many (`low_share` set to keep them)."""
    new = layout(cfg, total, min_stage1=done + 1)
    if done >= cfg.warmup_epochs:
        new = replace(new, warmup_epochs=cfg.warmup_epochs)
    if keep_low is not None:
        new = replace(new, low_share=keep_low / new.epochs)
    return new


def _cost(cfg: Config, plan: Plan, done: int, total: int, *, keep_low, ratio, overhead) -> float:
    """Wall seconds of epochs done..total-1 after a refit to `total`: probed x ratio, plus the
    per-epoch overhead."""
    return ratio * _seconds_after(cfg, plan, done, total, keep_low) + overhead * (total - done)


def _seconds_after(
    cfg: Config, plan: Plan, done: int, total: int, keep_low: int | None = None
) -> float:
    """Probed seconds of epochs done..total-1 when the fold is refit to `total` epochs."""
    c = apply_layout(cfg, _refit_layout(cfg, total, done, keep_low))
    return sum(_planned_epoch_seconds(c, plan, e) for e in range(done, total))


def apply_layout(cfg: Config, new: Layout) -> Config:
    """`cfg` laid out as `new` says."""
    low = {} if new.low_share is None else {"low_share": new.low_share}
    planned = {k: v for k, v in asdict(new).items() if k != "low_share"}
    return replace(cfg, **planned, **low)


def apply_plan(cfg: Config, schedule: Plan | FoldRefit | None) -> Config:
    """`cfg` with the plan's (or a refit's) epochs, second stage, warm-up and cycle length, and
    a refit's low-resolution share (unchanged without a budget or plan)."""
    if not cfg.budget_minutes or schedule is None:
        return cfg
    return replace(cfg, **schedule.planned())
