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
import statistics
import time
from dataclasses import replace

import torch

from tgs.config import Config
from tgs.run import Run

log = logging.getLogger(__name__)
SAFETY = 0.92  # share of a fold's time the planned epochs may use (the rest absorbs noise)
PROBE_STEPS = 9


def probe(cfg: Config, data, folds, fold: int, run: Run) -> dict:
    """Seconds per training step and per validation pass of fold `fold`, measured on the real
    model and data (one warm-up step not counted). Leaves no file behind."""
    from tgs.batch_aug import DeviceBatches
    from tgs.train import epoch_loader, seed_everything, steps_per_epoch, take, train_one_epoch
    from tgs.trainer import FoldTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + fold)
    probe_cfg = replace(cfg, max_train_batches=PROBE_STEPS + 1, epochs=1, stage2_epochs=0)
    t = FoldTrainer(probe_cfg, data, folds, fold, run)

    def step_times(n: int) -> list[float]:
        if isinstance(t.batches, DeviceBatches):
            loader = t.batches.epoch(0)
        else:
            loader = epoch_loader(t.batches, probe_cfg, 0, t.rt, t.dist)
        stamps = [time.perf_counter()]
        train_one_epoch(
            t.train_model,
            take(loader, n),
            t.criterion,
            t.opt,
            t.scaler,
            t.rt,
            "probe",
            on_step=lambda: stamps.append(time.perf_counter()),
            quiet=True,
        )
        return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]

    warm = step_times(1)[0]
    step_s = statistics.median(step_times(PROBE_STEPS))  # robust to a moment of contention
    t0 = time.perf_counter()
    t.val_score()
    val_s = time.perf_counter() - t0
    return {
        "step_seconds": step_s,
        "val_seconds": val_s,
        "warmup_step_seconds": warm,
        "n_val": len(t.val_idx),
        "steps_per_epoch": steps_per_epoch(len(t.train_set.ids), cfg, t.dist.world),
    }


def plan_epochs(
    cfg: Config,
    measured: dict,
    seconds: float,
    n_folds: int,
    n_test: int,
    slowdown: float = 1.0,
) -> dict:
    """The plan for `n_folds` folds (or waves of folds trained at once) in `seconds`: epochs
    (stage 1 + stage 2 in the config's ratio), warm-up and cycle length scaled alike; the OOF and
    predict passes reserved. `slowdown`: how much slower each fold trains than the probe
    measured, when several folds share the cores."""
    val_s = measured["val_seconds"] / max(1, cfg.val_every)
    epoch_s = (measured["step_seconds"] * measured["steps_per_epoch"] + val_s) * slowdown
    per_image = measured["val_seconds"] / max(1, measured["n_val"])  # one view, one model
    views = 2 if cfg.tta == "hflip" else 1
    models = max(1, math.ceil(cfg.epochs / cfg.cycle_epochs)) if cfg.snapshots else 1
    oof_s = per_image * measured["n_val"] * views * models
    predict_s = per_image * n_test * views * models * n_folds
    reserve = n_folds * oof_s + predict_s + 10.0  # + the search
    per_fold = max(0.0, (seconds - reserve) / max(1, n_folds))
    total = max(1, int(SAFETY * per_fold / epoch_s))
    want = cfg.epochs + cfg.stage2_epochs
    stage2 = round(total * cfg.stage2_epochs / want) if cfg.stage2_epochs else 0
    stage2 = min(stage2, total - 1) if total > 1 else 0
    epochs = total - stage2
    scale = epochs / cfg.epochs
    return {
        "budget_minutes": cfg.budget_minutes,
        "seconds_for_folds": round(seconds, 1),
        "n_folds": n_folds,
        "slowdown": round(slowdown, 3),
        "measured": {k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()},
        "epoch_seconds": round(epoch_s, 3),
        "reserve_seconds": round(reserve, 1),
        "fold_seconds": round(per_fold, 1),
        "epochs": epochs,
        "stage2_epochs": stage2,
        "warmup_epochs": min(epochs - 1, round(cfg.warmup_epochs * scale)) if epochs > 1 else 0,
        "cycle_epochs": max(1, round(cfg.cycle_epochs * scale)) if cfg.cycle_epochs else 0,
        "config_epochs": want,
    }


def apply_plan(cfg: Config, plan: dict | None) -> Config:
    """`cfg` with the plan's epochs, second stage, warm-up and cycle length (unchanged without
    a budget or plan)."""
    if not cfg.budget_minutes or not plan:
        return cfg
    keys = ("epochs", "stage2_epochs", "warmup_epochs", "cycle_epochs")
    return replace(cfg, **{k: plan[k] for k in keys})


def ensure_plan(
    run: Run,
    cfg: Config,
    data,
    folds,
    fold: int,
    n_folds: int,
    n_test: int,
    spent: float,
    slowdown: float = 1.0,
) -> dict | None:
    """RUN/plan.json (made now by a probe on `fold` unless it exists); None without a budget.
    `spent`: seconds of the budget already used (data loading, folds)."""
    if not cfg.budget_minutes:
        return None
    plan = run.plan()
    if plan is not None:
        return plan
    from tgs.meta import cpu_name

    t0 = time.time()
    measured = probe(cfg, data, folds, fold, run)
    left = 60 * cfg.budget_minutes - spent - (time.time() - t0)
    plan = plan_epochs(cfg, measured, left, n_folds, n_test, slowdown)
    plan["cpu"] = cpu_name()
    run.write_plan(plan)
    log.info(
        "budget %.1f min on %s: %.1f s/epoch measured -> %d epochs (+%d stage 2) per fold "
        "for %d folds (plan in %s)",
        cfg.budget_minutes,
        plan["cpu"],
        plan["epoch_seconds"],
        plan["epochs"],
        plan["stage2_epochs"],
        n_folds,
        run.plan_path,
    )
    return plan
