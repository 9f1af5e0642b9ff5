"""`tgs train`: one fold of a run, on its own or as a child process of `tgs run` (then under
torchrun for DDP)."""

from __future__ import annotations

import os

from tgs.budget.probe import ensure_plan
from tgs.core.config import load_config
from tgs.core.errors import TGSError
from tgs.core.procs import fold_started
from tgs.data.folds import load_folds
from tgs.data.io import test_ids
from tgs.models.checkpoint import read_checkpoint
from tgs.models.registry import resolve_pretrained
from tgs.pipeline.stages import load_data, train_fold, weights_meta
from tgs.run.folder import Run
from tgs.run.lock import run_lock
from tgs.train.distributed import init_distributed, shutdown_distributed
from tgs.train.validate import validate_config


def train_one_fold(
    config: str | os.PathLike | None,
    overrides: list[str],
    data_dir: str | os.PathLike | None,
    folds_csv: str | os.PathLike | None,
    fold: int,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> dict:
    """Train fold `fold` of `folds_csv` into the run (default runs/<config name>), planning the
    budget first when the config has one and no `tgs run` planned it (one process: `tgs run`
    plans before it launches DDP folds); the fold's time starts when `tgs run` launched this
    process, else now (`fold_started`). Returns the fold's summary ({} on a non-zero rank of a
    distributed fold)."""
    config, data_dir, folds_csv = _run_defaults(run_dir, config, data_dir, folds_csv)
    cfg = load_config(config, overrides)
    validate_config(cfg)
    cfg, source = resolve_pretrained(cfg)
    run = Run(run_dir or Run.default_root(cfg))
    data = load_data(data_dir)
    folds = load_folds(folds_csv, ids=data.ids)
    if fold not in set(folds["fold"]):
        raise TGSError(f"fold {fold} is not in {folds_csv} (folds: {sorted(set(folds['fold']))})")
    if resume and run.last(fold).is_file():
        read_checkpoint(run.last(fold))  # a damaged one fails here, before anything is written
    dist = init_distributed()
    try:
        with run_lock(run.root):  # rank 0 or `tgs run`, whose token this process inherited
            if dist.main:  # under torchrun only rank 0 writes the run files
                run.create(cfg, data_dir, folds_csv, weights_meta(source))
            if cfg.budget_minutes and not dist.enabled:  # `tgs run` plans before the folds
                n = len(cfg.folds or range(cfg.n_folds))
                ensure_plan(run, cfg, data, folds, fold, n, len(test_ids(data_dir)), 0.0)
            return train_fold(run, cfg, data, folds, fold, resume, dist, fold_started())
    finally:
        shutdown_distributed(dist)


def _run_defaults(run_dir, config, data_dir, folds_csv) -> tuple:
    """(config, data, folds CSV): those given, else an existing run's own (its config.yaml, the
    data folder in meta.json, its folds.csv), so `tgs train --run R --fold K --resume` alone
    continues (or rebuilds the OOF of) a fold."""
    run = Run(run_dir) if run_dir else None
    if run is not None and run.exists():
        config = config or run.config_path
        data_dir = data_dir or run.data_dir()
        folds_csv = folds_csv or (run.folds_path if run.folds_path.is_file() else None)
    if data_dir is None or folds_csv is None:
        raise TGSError("tgs train needs --data and --folds (or --run of an existing run folder)")
    return config, data_dir, folds_csv
