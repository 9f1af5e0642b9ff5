"""`run_pipeline`: the whole job (`tgs run`, `scripts/train_folds.sh`): data -> folds -> every
fold trained (here or in child processes) -> threshold search -> submission -> report."""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from tgs import COMPETITION
from tgs.budget.probe import ensure_plan
from tgs.core.config import Config, load_config
from tgs.core.errors import TGSError
from tgs.data.folds import folds_mismatch, load_folds, make_folds, save_folds
from tgs.data.io import TrainData, test_ids
from tgs.data.prepare import prepare
from tgs.data.synth import synth
from tgs.models.registry import resolve_pretrained
from tgs.pipeline.launch import cpu_ranks, folds_at_once, train_in_children
from tgs.pipeline.options import RunOptions
from tgs.pipeline.stages import (
    load_data,
    predict,
    score,
    search_thresholds,
    train_fold,
    weights_record,
)
from tgs.report import build_report
from tgs.resources import CONFIGS_DIR
from tgs.run.folder import Run
from tgs.run.lock import run_lock
from tgs.train.validate import validate_config

log = logging.getLogger(__name__)


# -- the whole job -------------------------------------------------------------------------
def _has_data(d: Path) -> bool:
    return all((d / p).exists() for p in ("train.csv", "train/images", "sample_submission.csv"))


def resolve_data(data: str | None, config: str | None) -> tuple[Path, str | None]:
    """(data folder, config) as `tgs run` finds them when not given: data/ or
    data/competition (unpacking data/<competition>.zip first), else synthetic data in
    data/synth with the shipped `demo` config."""
    if data:
        return Path(data), config

    root = Path("data")
    if not (root / "train.csv").is_file() and (root / f"{COMPETITION}.zip").is_file():
        if not _has_data(root / "competition"):
            prepare(root / f"{COMPETITION}.zip", root / "competition")
    for candidate in (root, root / "competition"):
        if _has_data(candidate):
            return candidate, config
    synth_dir = root / "synth"
    if not _has_data(synth_dir):
        synth(synth_dir, n_train=600, n_test=200, seed=0)
        log.info("wrote synthetic data to %s (600 train, 200 test)", synth_dir)
    return synth_dir, config or str(CONFIGS_DIR / "demo.yaml")


def default_config() -> str:
    return str(CONFIGS_DIR / ("resnet34.yaml" if torch.cuda.is_available() else "cpu.yaml"))


def ensure_folds(path: Path, data: TrainData, cfg: Config, *, named_by_tgs: bool) -> None:
    """The folds file at `path`, made when missing. One tgs named itself (`named_by_tgs`: the
    default folds/<data>-<k>f-s<seed>.csv) that no longer fits the data (another data set in a
    folder of the same name, a damaged file) is made again, with a note; a file the user named
    is checked as it is (`load_folds` refuses one that does not fit)."""
    if path.is_file():
        why = folds_mismatch(path, data.ids) if named_by_tgs else None
        if why is None:
            return
        log.warning("note: %s no longer fits the data (%s): making it again", path, why)
    save_folds(make_folds(data.ids, data.masks, data.z, cfg.n_folds, cfg.fold_seed), path)
    log.info("wrote %s (%d folds, seed %d)", path, cfg.n_folds, cfg.fold_seed)


@dataclass
class RunResult:
    run: Run
    cv: float
    submission: Path | None  # None: not predicted (RunOptions.predict False, another node)
    seconds: float
    holdout_score: float | None = None
    report: Path | None = None


def _check_launch(opts: RunOptions, cfg: Config) -> bool:
    """Refuse launch combinations that cannot work; True on the main node (node rank 0)."""
    flags = dict(zip(opts.torchrun[::2], opts.torchrun[1::2], strict=False))
    node_rank, several_nodes = flags.get("--node_rank", "0"), flags.get("--nnodes", "1") != "1"
    if len(opts.gpus) > 1 and opts.nproc > 1:
        raise TGSError("--gpus runs one fold per GPU; --nproc runs one fold on several: pick one")
    if opts.gpus and opts.jobs > len(opts.gpus):
        log.warning(
            "--gpus %s trains one fold per GPU: jobs %d is not used (without --gpus, %d folds "
            "train at once on the one visible GPU)",
            ",".join(opts.gpus),
            opts.jobs,
            opts.jobs,
        )
    if several_nodes and cfg.budget_minutes:
        raise TGSError(
            "budget_minutes with several nodes: every node would plan its own epochs; set "
            "epochs (budget_minutes=0) for a multi-node run"
        )
    return node_rank == "0"


@dataclass
class Job:
    """What `tgs run` resolved before it starts: the data folder, the config (its file and the
    resolved config, launch flags and thread split in), the encoder weights' source, the folds
    to train, the cores split between folds trained at once (0: not split) and the CPU ranks
    of each fold."""

    data_dir: Path
    config: str
    cfg: Config
    source: object  # a WeightsSource, or None
    folds: list[int]
    cores: int
    ranks: int


def resolve_job(opts: RunOptions) -> Job:
    """The data, config and folds of `opts`, and the cores each fold gets (`opts.jobs` and
    `opts.nproc` set from the config when not given)."""
    if len(opts.gpus) == 1:  # before anything touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = opts.gpus[0]
    data_dir, config = resolve_data(opts.data, opts.config)
    config = config or default_config()
    cfg = load_config(config, opts.overrides)  # + the launch flags, saved with the run:
    cfg = replace(cfg, jobs=opts.jobs or cfg.jobs, nproc=opts.nproc or cfg.nproc)
    validate_config(cfg)
    cfg, source = resolve_pretrained(cfg)
    opts.jobs, opts.nproc = cfg.jobs, cfg.nproc
    folds = opts.folds if opts.folds is not None else cfg.folds or list(range(cfg.n_folds))
    at_once, ranks = folds_at_once(opts, len(folds)), cpu_ranks(opts)
    cores = (os.cpu_count() or 1) if at_once * ranks > 1 and not cfg.threads else 0
    if cores:  # split the cores between the folds (and their DDP ranks) trained at once
        cfg = replace(cfg, threads=max(1, cores // (at_once * ranks)))
    return Job(data_dir, str(config), cfg, source, folds, cores, ranks)


def run_pipeline(opts: RunOptions) -> RunResult:
    """Data -> folds -> every fold trained -> threshold search -> submission (-> report).
    On a node other than rank 0 of a multi-node run, only the training ranks run."""
    t0 = time.time()
    job = resolve_job(opts)
    main_node = _check_launch(opts, job.cfg)
    run = Run(opts.run or Run.default_root(job.cfg))
    # one writer: a second `tgs run` on this folder refuses at once (the main node's, on shared
    # storage: the other nodes of a multi-node run train their ranks in it)
    with run_lock(run.root) if main_node else nullcontext():
        if not opts.resume and any(run.started(k) for k in run.folds()):
            raise TGSError(
                f"{run.root} already holds trained folds: pass --resume to continue it, or "
                "--run NEW"
            )
        data, folds_df, folds_csv = _data_and_folds(run, job, opts)
        run.create(job.cfg, job.data_dir, folds_csv, weights_record(job.source))
        _train_folds(run, job, opts, data=data, folds_df=folds_df, spent=time.time() - t0)
        if not main_node:
            return RunResult(run, math.nan, None, time.time() - t0)
        return _finish(run, job, opts, data=data, t0=t0)


def _data_and_folds(run: Run, job: Job, opts: RunOptions) -> tuple[TrainData, Any, Path]:
    """(the labelled set, its folds, the folds file): the file given, else tgs's own for the
    data folder (made when missing or no longer fitting); the folds to train must be in it."""
    folds_csv = Path(opts.folds_csv or default_folds_csv(job.data_dir, job.cfg))
    log.info(
        "== config %s | data %s | run %s | folds %s of %s",
        job.config,
        job.data_dir,
        run.root,
        job.folds,
        folds_csv,
    )
    data = load_data(job.data_dir)
    ensure_folds(folds_csv, data, job.cfg, named_by_tgs=opts.folds_csv is None)
    folds_df = load_folds(folds_csv, ids=data.ids)
    missing = sorted(set(job.folds) - set(folds_df["fold"]))
    if missing:
        raise TGSError(f"fold {missing[0]} is not in {folds_csv}")
    return data, folds_df, folds_csv


def _train_folds(
    run: Run, job: Job, opts: RunOptions, *, data: TrainData, folds_df, spent: float
) -> None:
    """Every fold not finished yet (a resumed run skips the finished ones), planned first when
    budgeted, here or in child processes."""
    todo = [k for k in job.folds if not (opts.resume and k in run.finished_folds())]
    for k in sorted(set(job.folds) - set(todo)):
        log.info("== fold %d already finished (%s): skipped", k, run.fold(k).summary)
    if todo and job.cfg.budget_minutes:
        _plan(run, job, data, folds_df, todo, opts=opts, spent=spent)
    if opts.nproc > 1 or len(opts.gpus) > 1 or opts.jobs > 1:
        train_in_children(run, job.data_dir, todo, opts, cores=job.cores, ranks=job.ranks)
        return
    for k in todo:
        log.info("== fold %d", k)
        resume = opts.resume and run.started(k)
        train_fold(run, job.cfg, data, folds_df, k, resume=resume, started=time.time())


def _finish(run: Run, job: Job, opts: RunOptions, *, data: TrainData, t0: float) -> RunResult:
    """The threshold search, the submission (scored when the data folder has a truth.csv) and
    the report."""
    th = search_thresholds(run, job.data_dir, data)
    sub = predict(run, job.data_dir) if opts.predict else None
    result = RunResult(run, th.require_cv(run.paths.thresholds), sub, time.time() - t0)
    truth = job.data_dir / "truth.csv"
    if sub is not None and truth.is_file():
        result.holdout_score = score(sub, truth)
    if opts.report:
        result.report = _report(run, job.data_dir)
    result.seconds = time.time() - t0
    return result


def default_folds_csv(data_dir: Path, cfg: Config) -> Path:
    """folds/<data folder>-<k>f-s<seed>.csv: one folds file per data folder and split."""
    return Path("folds") / f"{Path(data_dir).name}-{cfg.n_folds}f-s{cfg.fold_seed}.csv"


def _plan(
    run: Run, job: Job, data: TrainData, folds_df, todo: list[int], *, opts: RunOptions, spent
) -> None:
    """The budget plan for the folds to train: folds at once (GPUs or CPU jobs) make waves; CPU
    processes (jobs x their DDP ranks) are probed as many at once; DDP ranks split each epoch's
    steps (their gradient all-reduce is not probed: the per-fold refit measures it)."""
    at_once = folds_at_once(opts, len(todo))
    ensure_plan(
        run,
        job.cfg,
        data,
        folds_df,
        todo[0],
        waves=-(-len(todo) // at_once),
        n_models=len(todo),
        n_test=len(test_ids(job.data_dir)) if opts.predict else 0,
        spent=spent,
        parallel=1 if opts.gpus else at_once * job.ranks,
        world=max(1, opts.nproc),
    )


def _report(run: Run, data_dir: Path) -> Path:
    """The run's HTML report (RUN/report/index.html)."""
    return build_report(run, data_dir)
