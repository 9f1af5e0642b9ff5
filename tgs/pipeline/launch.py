"""Folds in child processes: `tgs train` per fold (under torchrun for DDP), in waves of one fold
per GPU or per CPU job, with the cores split between the folds trained at once."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import torch

from tgs.core import commands
from tgs.core.errors import TGSError
from tgs.core.procs import child_env
from tgs.pipeline.options import RunOptions
from tgs.run.folder import Run
from tgs.run.lock import held_fds

log = logging.getLogger(__name__)


def _train_command(run: Run, data: Path, fold: int, resume: bool, opts: RunOptions) -> list[str]:
    """`tgs train` for one fold of an existing run (its resolved config and folds), under
    torchrun when nproc > 1."""
    paths = run.paths
    train = commands.train_child(
        config=paths.config, data=data, folds=paths.folds, fold=fold, run=run.root, resume=resume
    )
    if opts.nproc <= 1:
        return train.argv()
    rendezvous = opts.torchrun or ["--standalone"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", *rendezvous]
    return [*torchrun, "--nproc_per_node", str(opts.nproc), *train.argv()[1:]]


def folds_at_once(opts: RunOptions, n: int) -> int:
    """How many of `n` folds train at once: one per GPU with --gpus (whatever `jobs` says),
    else `jobs`."""
    return min(n, len(opts.gpus) or max(1, opts.jobs))


def cpu_ranks(opts: RunOptions) -> int:
    """DDP ranks per fold that train on CPU cores (`--nproc` without a GPU), else 1."""
    on_cpu = not opts.gpus and not torch.cuda.is_available()
    return max(1, opts.nproc) if on_cpu else 1


def _start_fold(run: Run, cmd: list[str], k: int, gpu: str | None, logged: bool):
    """One fold's child process; with `logged`, its output goes to RUN/fold{k}.log."""
    if not logged:
        log.info("== fold %d", k)
        return subprocess.Popen(cmd, env=child_env(gpu), pass_fds=held_fds())
    where = f"GPU {gpu}" if gpu is not None else "its own process"
    log.info("== fold %d on %s (log %s)", k, where, run.paths.fold_log(k))
    with open(run.paths.fold_log(k), "w") as out:
        return subprocess.Popen(
            cmd, env=child_env(gpu), stdout=out, stderr=subprocess.STDOUT, pass_fds=held_fds()
        )


def train_in_children(
    run: Run, data_dir: Path, todo: list[int], opts: RunOptions, *, cores: int = 0, ranks: int = 1
) -> None:
    """Folds in child processes: waves of one fold per GPU (--gpus) or per CPU job (--jobs),
    each fold on torchrun with --nproc. A failed fold stops the run with its log named.
    `cores` (CPU jobs whose threads were split automatically): a last wave with fewer folds
    than jobs splits them between its own folds (and their `ranks` CPU processes each), so no
    core idles."""
    slots = opts.gpus or [None] * max(1, opts.jobs or 1)
    logged = len(slots) > 1
    for s in range(0, len(todo), len(slots)):
        wave, procs = todo[s : s + len(slots)], []
        split = cores // (len(wave) * ranks)
        extra = [f"threads={max(1, split)}"] if cores and not opts.gpus else []
        for gpu, k in zip(slots, wave, strict=False):
            cmd = _train_command(run, data_dir, k, opts.resume and run.started(k), opts) + extra
            procs.append((k, _start_fold(run, cmd, k, gpu, logged)))
        failed = [k for k, p in procs if p.wait() != 0]
        if failed:
            where = f" (see {run.paths.fold_log(failed[0])})" if logged else ""
            raise TGSError(f"fold {failed[0]} failed{where}")
