"""`tgs train`: one fold of a run, on its own or as a child process of `tgs run` (then under
torchrun for DDP)."""

from __future__ import annotations

from dataclasses import replace

from tgs.budget.probe import ensure_plan
from tgs.core.config import load_config
from tgs.core.errors import TGSError
from tgs.core.procs import fold_started
from tgs.data.folds import load_folds
from tgs.data.io import test_ids
from tgs.models.checkpoint import read_checkpoint
from tgs.models.registry import resolve_pretrained
from tgs.pipeline.options import TrainOptions
from tgs.pipeline.stages import load_data, train_fold, weights_record
from tgs.run.folder import Run
from tgs.run.lock import run_lock
from tgs.run.records import FoldSummary
from tgs.train.distributed import init_distributed, shutdown_distributed
from tgs.train.validate import validate_config


def run_train(opts: TrainOptions) -> FoldSummary | None:
    """`tgs train`: fold `opts.fold` of its folds CSV into the run (default runs/<config name>),
    planning the budget first when the config has one and no `tgs run` planned it (one
    process: `tgs run` plans before it launches DDP folds); the fold's time starts when
    `tgs run` launched this process, else now (`fold_started`). Returns the fold's summary
    (None on a non-zero rank of a distributed fold)."""
    opts = with_run_defaults(opts)
    cfg = load_config(opts.config, opts.overrides)
    validate_config(cfg)
    cfg, source = resolve_pretrained(cfg)
    run = Run(opts.run or Run.default_root(cfg))
    data = load_data(opts.data)
    folds = load_folds(opts.folds, ids=data.ids)
    fold = opts.fold
    if fold not in set(folds["fold"]):
        raise TGSError(f"fold {fold} is not in {opts.folds} (folds: {sorted(set(folds['fold']))})")
    last = run.fold(fold).last
    if opts.resume and last.is_file():
        read_checkpoint(last)  # a damaged one fails here, before anything is written
    dist = init_distributed()
    try:
        with run_lock(run.root):  # rank 0 or `tgs run`, whose token this process inherited
            if dist.main:  # under torchrun only rank 0 writes the run files
                run.create(cfg, opts.data, opts.folds, weights_record(source))
            if cfg.budget_minutes and not dist.enabled:  # `tgs run` plans before the folds
                n = len(cfg.folds or range(cfg.n_folds))
                n_test = len(test_ids(opts.data))
                ensure_plan(run, cfg, data, folds, fold, waves=n, n_test=n_test, spent=0.0)
            return train_fold(
                run, cfg, data, folds, fold, resume=opts.resume, dist=dist, started=fold_started()
            )
    finally:
        shutdown_distributed(dist)


def with_run_defaults(opts: TrainOptions) -> TrainOptions:
    """`opts` with the config, data and folds CSV not given taken from an existing run (its
    config.yaml, the data folder in meta.json, its folds.csv), so `tgs train --run R --fold K
    --resume` alone continues (or rebuilds the OOF of) a fold."""
    run = Run(opts.run) if opts.run else None
    config, data, folds = opts.config, opts.data, opts.folds
    if run is not None and run.exists():
        config = config or str(run.paths.config)
        data = data or str(run.data_dir())
        folds = folds or (str(run.paths.folds) if run.paths.folds.is_file() else None)
    if data is None or folds is None:
        raise TGSError("tgs train needs --data and --folds (or --run of an existing run folder)")
    return replace(opts, config=config, data=data, folds=folds)
