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
from pathlib import Path

import torch

from tgs.config import Config
from tgs.errors import TGSError
from tgs.run import Run
from tgs.train import low_epochs

log = logging.getLogger(__name__)
SAFETY = 0.92  # share of a fold's time the planned epochs may use (the rest absorbs noise)
PROBE_STEPS = 9
LAYOUT_KEYS = ("epochs", "stage2_epochs", "warmup_epochs", "cycle_epochs")  # what a plan sets


def probe(cfg: Config, data, folds, fold: int, run: Run) -> dict:
    """Seconds per training step (median) and per validation pass of fold `fold`, measured on
    the real model and data (one warm-up step not counted). Leaves no file behind."""
    from tgs.train import seed_everything, steps_per_epoch
    from tgs.trainer import FoldTrainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + fold)
    probe_cfg = replace(cfg, max_train_batches=PROBE_STEPS + 1, epochs=1, stage2_epochs=0)
    t = FoldTrainer(probe_cfg, data, folds, fold, run)
    warm, step_s = _timed_steps(t, probe_cfg)
    extra = {}
    if cfg.low_size:  # progressive resizing: its low-resolution steps cost less
        from tgs.trainer import train_size

        with train_size(t.model, cfg.low_size):
            extra["low_step_seconds"] = _timed_steps(t, probe_cfg)[1]
    return {
        **extra,
        "step_seconds": step_s,
        "val_seconds": _timed_validation(t),
        "warmup_step_seconds": warm,
        "n_val": len(t.val_idx),
        "steps_per_epoch": steps_per_epoch(len(t.train_set.ids), cfg, t.dist.world),
    }


def probe_in_processes(run: Run, fold: int, parallel: int) -> dict:
    """`probe` in `parallel` processes at once (as `jobs` folds share the cores in the real
    run), each on the run's resolved config, data and folds; the medians of their answers."""
    import json
    import subprocess
    import sys
    import tempfile

    from tgs.pipeline import _child_env

    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"probe{i}.json" for i in range(parallel)]
        cmd = [sys.executable, "-m", "tgs.budget", str(run.root), str(fold)]
        procs = [subprocess.Popen([*cmd, str(o)], env=_child_env()) for o in outs]
        if any(p.wait() != 0 for p in procs):
            raise TGSError(f"the budget probe of {run.root} failed (see above)")
        found = [json.loads(o.read_text()) for o in outs]
    out = dict(found[0])
    for key in ("step_seconds", "val_seconds", "warmup_step_seconds", "low_step_seconds"):
        if key in out:
            out[key] = statistics.median(f[key] for f in found)
    out["parallel"] = parallel
    return out


def _probe_main(argv: list[str]) -> None:
    """`python -m tgs.budget RUN FOLD OUT.json`: one probe process of `probe_in_processes`."""
    from tgs.fileio import write_json
    from tgs.folds import load_folds
    from tgs.pipeline import load_data

    run, fold, out = Run(argv[0]), int(argv[1]), argv[2]
    data = load_data(run.data_dir())
    folds = load_folds(run.folds_path, ids=data.ids)
    write_json(out, probe(run.config(), data, folds, fold, run))


def _timed_steps(t, cfg: Config) -> tuple[float, float]:
    """(seconds of a first, warm-up step; median seconds of the next PROBE_STEPS steps)."""
    warm = _step_times(t, cfg, 1)[0]
    return warm, statistics.median(_step_times(t, cfg, PROBE_STEPS))


def _step_times(t, cfg: Config, n: int) -> list[float]:
    """Seconds of each of `n` training steps of trainer `t` (loading the batch included)."""
    from tgs.batch_aug import DeviceBatches
    from tgs.train import epoch_loader, take, train_one_epoch

    if isinstance(t.batches, DeviceBatches):
        loader = t.batches.epoch(0)
    else:
        loader = epoch_loader(t.batches, cfg, 0, t.rt, t.dist)

    def ema_step() -> None:  # as a real step does
        if t.ema is not None:
            t.ema.update_parameters(t.model)

    stamps = [time.perf_counter()]
    train_one_epoch(
        t.train_model,
        take(loader, n),
        t.criterion,
        t.opt,
        t.scaler,
        t.rt,
        "probe",
        on_step=lambda: (ema_step(), stamps.append(time.perf_counter())),
        quiet=True,
    )
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def _timed_validation(t) -> float:
    t0 = time.perf_counter()
    t.val_score()
    return time.perf_counter() - t0


def plan_epochs(
    cfg: Config,
    measured: dict,
    seconds: float,
    waves: int,
    n_test: int,
    n_models: int | None = None,
    world: int = 1,
) -> dict:
    """The plan for `waves` rounds of folds (folds trained at once share a round) in `seconds`:
    epochs (stage 1 + stage 2 in the config's ratio; a whole number of restart cycles), warm-up
    scaled alike (with progressive resizing an epoch costs the mix of low and full-size steps);
    the OOF passes and predict over `n_models` folds (default `waves`) reserved.
    `world`: DDP ranks sharing each epoch's steps."""
    n_models = n_models or waves
    steps = -(-measured["steps_per_epoch"] // max(1, world))
    val_s = measured["val_seconds"] / max(1, cfg.val_every)
    step_s = measured["step_seconds"]
    if cfg.low_size and "low_step_seconds" in measured:  # progressive resizing: mean step
        share = low_epochs(cfg) / (cfg.epochs + cfg.stage2_epochs)
        step_s = share * measured["low_step_seconds"] + (1 - share) * step_s
    epoch_s = step_s * steps + val_s
    per_image = measured["val_seconds"] / max(1, measured["n_val"])  # one view, one model
    views = 2 if cfg.tta == "hflip" else 1
    snaps = max(1, math.ceil(cfg.epochs / cfg.cycle_epochs)) if cfg.snapshots else 1
    oof_s = per_image * measured["n_val"] * views * snaps
    predict_s = per_image * n_test * views * snaps * n_models
    reserve = waves * oof_s + predict_s + 10.0  # + the search
    per_fold = max(0.0, (seconds - reserve) / max(1, waves))
    total = max(1, int(SAFETY * per_fold / epoch_s))
    return {
        "budget_minutes": cfg.budget_minutes,
        "seconds_for_folds": round(seconds, 1),
        "waves": waves,
        "n_models": n_models,
        "world": world,
        "measured": {k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()},
        "epoch_seconds": round(epoch_s, 3),
        "reserve_seconds": round(reserve, 1),
        "fold_seconds": round(per_fold, 1),
        **layout(cfg, total),
        "config_epochs": cfg.epochs + cfg.stage2_epochs,
    }


def layout(cfg: Config, total: int, min_stage1: int = 1) -> dict:
    """`total` epochs laid out as `cfg` lays out its own: stage 2 in the config's ratio, a whole
    number of restart cycles, warm-up scaled alike; stage 1 keeps at least `min_stage1` epochs
    (a refit never ends stage 1 before the epochs already trained). Keys as `apply_plan` reads."""
    want = cfg.epochs + cfg.stage2_epochs
    stage2 = round(total * cfg.stage2_epochs / want) if cfg.stage2_epochs else 0
    stage2 = max(0, min(stage2, total - min_stage1))
    epochs, cycle = total - stage2, 0
    if cfg.scheduler == "cosine_restarts" and cfg.cycle_epochs:  # whole cycles only
        cycles = max(1, round(cfg.epochs / cfg.cycle_epochs))
        cycle = max(1, epochs // cycles, -(-min_stage1 // cycles))
        epochs = cycle * cycles if epochs >= cycles or min_stage1 > 1 else epochs
    scale = epochs / cfg.epochs
    return {
        "epochs": epochs,
        "stage2_epochs": stage2,
        "warmup_epochs": min(epochs - 1, round(cfg.warmup_epochs * scale)) if epochs > 1 else 0,
        "cycle_epochs": cycle or cfg.cycle_epochs,
    }


def _planned_epoch_seconds(cfg: Config, plan: dict, epoch: int) -> float:
    """What the probe said epoch `epoch` (0-based) of `cfg`'s schedule costs: its steps at the
    epoch's resolution (progressive resizing) plus the validation share."""
    m = plan["measured"]
    steps = -(-m["steps_per_epoch"] // max(1, plan.get("world", 1)))
    low = epoch < low_epochs(cfg) and "low_step_seconds" in m
    step_s = m["low_step_seconds"] if low else m["step_seconds"]
    return step_s * steps + m["val_seconds"] / max(1, cfg.val_every)


def replan(
    cfg: Config, plan: dict, seconds: list[float], overhead: float = 0.0, startup: float = 0.0
) -> dict:
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
    start = low if on_full else 0  # the ratio is taken on epochs of one resolution
    timed = range(start + 1, done) if done - start > 1 else range(start, done)
    probed = sum(_planned_epoch_seconds(cfg, plan, e) for e in timed)
    ratio = max(sum(seconds[e] for e in timed), 1e-6) / max(probed, 1e-6)
    record = {
        "after_epochs": done,
        "on_full_size": on_full,
        "seconds_so_far": round(spent, 1),
        "ratio": round(ratio, 4),
        "overhead_seconds": round(overhead, 3),
        "startup_seconds": round(startup, 1),
        "fold_seconds": plan["fold_seconds"],
        "planned_epochs": cfg.epochs + cfg.stage2_epochs,
        "from_epochs": cfg.epochs,  # the stage-1 schedule it continues (`stage1_scheduler`)
        "from_warmup": cfg.warmup_epochs,
    }
    if cfg.low_size and low == done:  # no full-size epoch timed yet to price the rest with
        kept = {k: getattr(cfg, k) for k in LAYOUT_KEYS}
        return {**kept, **record, "kept": "no full-size epoch timed yet"}
    keep_low = low if on_full else None
    room, total = SAFETY * (plan["fold_seconds"] - spent), done + 1  # one more at least
    limit = 10 * max(cfg.epochs + cfg.stage2_epochs, total)  # a probe 10x off is broken
    while total < limit and _cost(cfg, plan, done, total + 1, keep_low, ratio, overhead) <= room:
        total += 1
    return {**_refit_layout(cfg, total, done, keep_low), **record}


def _refit_layout(cfg: Config, total: int, done: int, keep_low: int | None = None) -> dict:
    """`layout` for a refit after `done` epochs: stage 1 outlives them, a warm-up they have
    already finished stays as it was, and `keep_low` (when given) low-resolution epochs stay
    exactly that many (`low_share` set to keep them)."""
    new = layout(cfg, total, min_stage1=done + 1)
    if done >= cfg.warmup_epochs:
        new["warmup_epochs"] = cfg.warmup_epochs
    if keep_low is not None:
        new["low_share"] = keep_low / new["epochs"]
    return new


def _cost(cfg: Config, plan: dict, done: int, total: int, keep_low, ratio, overhead) -> float:
    """Wall seconds of epochs done..total-1 after a refit to `total`: probed x ratio, plus the
    per-epoch overhead."""
    return ratio * _seconds_after(cfg, plan, done, total, keep_low) + overhead * (total - done)


def _seconds_after(
    cfg: Config, plan: dict, done: int, total: int, keep_low: int | None = None
) -> float:
    """Probed seconds of epochs done..total-1 when the fold is refit to `total` epochs."""
    c = replace(cfg, **_refit_layout(cfg, total, done, keep_low))
    return sum(_planned_epoch_seconds(c, plan, e) for e in range(done, total))


def apply_plan(cfg: Config, plan: dict | None) -> Config:
    """`cfg` with the plan's epochs, second stage, warm-up and cycle length, and a refit's
    low-resolution share (unchanged without a budget or plan)."""
    if not cfg.budget_minutes or not plan:
        return cfg
    refit = {"low_share": plan["low_share"]} if "low_share" in plan else {}
    return replace(cfg, **{k: plan[k] for k in LAYOUT_KEYS}, **refit)


def ensure_plan(
    run: Run,
    cfg: Config,
    data,
    folds,
    fold: int,
    waves: int,
    n_test: int,
    spent: float,
    parallel: int = 1,
    n_models: int | None = None,
    world: int = 1,
) -> dict | None:
    """RUN/plan.json (made now by a probe on `fold` unless it exists); None without a budget.
    `spent`: seconds of the budget already used (data loading, folds)."""
    if not cfg.budget_minutes:
        return None
    plan = run.plan()
    if plan is not None:
        return plan
    from tgs.meta import cpu_name, gpu_name

    t0 = time.time()
    if parallel > 1:
        measured = probe_in_processes(run, fold, parallel)
    else:
        measured = probe(cfg, data, folds, fold, run)
    left = 60 * cfg.budget_minutes - spent - (time.time() - t0)
    plan = plan_epochs(cfg, measured, left, waves, n_test, n_models, world)
    plan["cpu"], plan["gpu"] = cpu_name(), gpu_name() if cfg.device != "cpu" else None
    run.write_plan(plan)
    log.info(
        "budget %.1f min on %s: %.1f s/epoch measured -> %d epochs (+%d stage 2) per fold "
        "in %d round(s) of folds (plan in %s)",
        cfg.budget_minutes,
        plan["gpu"] or plan["cpu"],
        plan["epoch_seconds"],
        plan["epochs"],
        plan["stage2_epochs"],
        waves,
        run.plan_path,
    )
    return plan


if __name__ == "__main__":
    import sys

    _probe_main(sys.argv[1:])
