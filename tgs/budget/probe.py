"""Budgeted training: fit a whole run (every fold, the search and predict) into `budget_minutes`
on the machine at hand.

Before the first fold, a timed probe trains a few steps of the real model and validates once;
from the measured seconds per epoch the plan fixes the number of epochs, and the schedule
(warm-up, cosine, cycles, a second stage) is laid out over that length, so every fold finishes
its schedule instead of being cut mid-way. The plan is saved as RUN/plan.json; resuming keeps it.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from tgs.budget.plan import plan_epochs
from tgs.budget.refit import fold_callbacks
from tgs.core.config import Config
from tgs.core.errors import TGSError
from tgs.core.meta import cpu_name, gpu_name
from tgs.core.procs import child_env
from tgs.data.cache import load_train_cached
from tgs.data.folds import load_folds
from tgs.models.registry import encoder_of
from tgs.run.folder import Run
from tgs.run.records import Measured, Plan
from tgs.train.loop import take, train_one_epoch, train_size
from tgs.train.rng import seed_everything
from tgs.train.schedule import steps_per_epoch
from tgs.train.trainer import FoldTrainer, build_trainer

PROBE_STEPS = 9

log = logging.getLogger(__name__)


def probe(cfg: Config, data, folds, fold: int, run: Run) -> Measured:
    """Seconds per training step (median) and per validation pass of fold `fold`, measured on
    the real model and data (one warm-up step not counted), with the fold's own callbacks.
    Leaves no file behind."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + fold)
    probe_cfg = replace(cfg, max_train_batches=PROBE_STEPS + 1, epochs=1, stage2_epochs=0)
    t = build_trainer(probe_cfg, data, folds, fold, run, callbacks=fold_callbacks(probe_cfg))
    warm, step_s = _timed_steps(t, probe_cfg)
    low_s = frozen_s = None
    if cfg.low_size:  # progressive resizing: its low-resolution steps cost less
        with train_size(t.model, cfg.low_size):
            low_s = _timed_steps(t, probe_cfg)[1]
    if cfg.freeze_encoder_epochs:  # a frozen encoder's steps skip its backward pass
        encoder = encoder_of(t.model)
        encoder.requires_grad_(False)
        frozen_s = _timed_steps(t, probe_cfg)[1]
        encoder.requires_grad_(True)
    return Measured(
        low_step_seconds=low_s,
        frozen_step_seconds=frozen_s,
        step_seconds=step_s,
        val_seconds=_timed_validation(t),
        warmup_step_seconds=warm,
        n_val=len(t.val_idx),
        steps_per_epoch=steps_per_epoch(len(t.train_set.ids), cfg, t.dist.world),
    )


def probe_in_processes(run: Run, fold: int, parallel: int) -> Measured:
    """`probe` in `parallel` processes at once (as `jobs` folds share the cores in the real
    run), each on the run's resolved config, data and folds; the medians of their answers."""
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"probe{i}.json" for i in range(parallel)]
        cmd = [sys.executable, "-m", "tgs.budget.probe", str(run.root), str(fold)]
        procs = [subprocess.Popen([*cmd, str(o)], env=child_env()) for o in outs]
        if any(p.wait() != 0 for p in procs):
            raise TGSError(f"the budget probe of {run.root} failed (see above)")
        found = [Measured.read(o) for o in outs]

    def median(seconds: list[float | None]) -> float | None:
        return None if seconds[0] is None else statistics.median(seconds)

    first = found[0]
    return replace(
        first,
        step_seconds=median([f.step_seconds for f in found]),
        val_seconds=median([f.val_seconds for f in found]),
        warmup_step_seconds=median([f.warmup_step_seconds for f in found]),
        low_step_seconds=median([f.low_step_seconds for f in found]),
        frozen_step_seconds=median([f.frozen_step_seconds for f in found]),
        parallel=parallel,
    )


def _probe_main(argv: list[str]) -> None:
    """One probe process of `probe_in_processes` (this module run with RUN FOLD OUT)."""
    run, fold, out = Run(argv[0]), int(argv[1]), argv[2]
    data = load_train_cached(run.data_dir())
    folds = load_folds(run.paths.folds, ids=data.ids)
    probe(run.config(), data, folds, fold, run).write(out)


def _timed_steps(t: FoldTrainer, cfg: Config) -> tuple[float, float]:
    """(seconds of a first, warm-up step; median seconds of the next PROBE_STEPS steps)."""
    warm = _step_times(t, cfg, 1)[0]
    return warm, statistics.median(_step_times(t, cfg, PROBE_STEPS))


def _step_times(t: FoldTrainer, cfg: Config, n: int) -> list[float]:
    """Seconds of each of `n` training steps of trainer `t` (loading the batch included)."""
    loader = t.batches.epoch(0)

    stamps = [time.perf_counter()]
    train_one_epoch(
        t.train_model,
        take(loader, n),
        t.criterion,
        t.opt,
        t.scaler,
        rt=t.rt,
        desc="probe",
        on_step=lambda: (t.after_step(), stamps.append(time.perf_counter())),  # as a real step
        quiet=True,
    )
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def _timed_validation(t: FoldTrainer) -> float:
    t0 = time.perf_counter()
    t.val_score()
    return time.perf_counter() - t0


def ensure_plan(
    run: Run,
    cfg: Config,
    data,
    folds,
    fold: int,
    *,
    waves: int,
    n_test: int,
    spent: float,
    parallel: int = 1,
    n_models: int | None = None,
    world: int = 1,
) -> Plan | None:
    """RUN/plan.json (made now by a probe on `fold` unless it exists); None without a budget.
    `spent`: seconds of the budget already used (data loading, folds)."""
    if not cfg.budget_minutes:
        return None
    plan = run.plans.plan()
    if plan is not None:
        return plan
    t0 = time.time()
    if parallel > 1:
        measured = probe_in_processes(run, fold, parallel)
    else:
        measured = probe(cfg, data, folds, fold, run)
    left = 60 * cfg.budget_minutes - spent - (time.time() - t0)
    plan = plan_epochs(
        cfg, measured, left, waves=waves, n_test=n_test, n_models=n_models, world=world
    )
    plan = replace(plan, cpu=cpu_name(), gpu=gpu_name() if cfg.device != "cpu" else None)
    run.plans.write_plan(plan)
    log.info(
        "budget %.1f min on %s: %.1f s/epoch measured -> %d epochs (+%d stage 2) per fold "
        "in %d round(s) of folds (plan in %s)",
        cfg.budget_minutes,
        plan.gpu or plan.cpu,
        plan.epoch_seconds,
        plan.epochs,
        plan.stage2_epochs,
        waves,
        run.paths.plan,
    )
    return plan


if __name__ == "__main__":
    import sys

    _probe_main(sys.argv[1:])
