"""The stages as functions over a `Run`: train a fold, search post-processing, predict, score;
and `run_pipeline`, the whole job (`python -m tgs run`, `scripts/train_folds.sh`).

Stages talk through the run folder only; each can be re-run alone. Training is imported lazily,
so predicting never loads it.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tgs.config import Config, load_config
from tgs.data.io import TrainData
from tgs.errors import TGSError
from tgs.run import Run

if TYPE_CHECKING:
    from tgs.thresholds import SearchResult

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"


# -- stages --------------------------------------------------------------------------------
def load_data(data_dir: str | os.PathLike) -> TrainData:
    """The labelled set, decoded once per data folder (cached arrays)."""
    from tgs.data.cache import load_train_cached

    return load_train_cached(data_dir)


def train_fold(
    run: Run,
    cfg: Config,
    data: TrainData,
    folds,
    fold: int,
    resume: bool = False,
    dist=None,
    started: float | None = None,
) -> dict:
    """Train fold `fold` of `folds` (DataFrame id, fold) into the run; returns its summary
    ({} on a non-zero rank). Seeds the RNGs with seed + fold and sets the thread count.
    `started`: `time.time()` when this fold's work began (see `FoldTrainer`)."""
    import torch

    from tgs.budget import apply_plan
    from tgs.train import seed_everything
    from tgs.trainer import FoldTrainer

    cfg = apply_plan(cfg, run.fold_plan(fold))  # the fold's refit schedule once it has one
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log.info("fold %d: %d CPU threads", fold, torch.get_num_threads())
    seed_everything(cfg.seed + fold)
    return FoldTrainer(cfg, data, folds, fold, run, dist, started).fit(resume)


def search_oof(
    ids: list[str],
    probs: np.ndarray,
    cls: np.ndarray | None,
    data: TrainData,
    data_dir: str | os.PathLike,
    cfg: Config,
    gate: str,
) -> tuple[SearchResult, dict]:
    """Threshold x min-area (x gate) search on OOF probabilities (N, 101, 101) of `ids`, with
    salt-present probabilities `cls` (N,) or None, the config's min-areas and blank rule ->
    (SearchResult, the thresholds.json fields it decides)."""
    from tgs.thresholds import DEFAULT_THRESHOLDS, gate_score, is_blank
    from tgs.thresholds import search as search_grid

    rows = data.rows(ids, data_dir)
    masks = data.masks[rows]
    blank = is_blank(data.images[rows]) if cfg.blank_rule else None
    score = gate_score(probs, cls, gate)
    result = search_grid(
        probs, masks, DEFAULT_THRESHOLDS, np.asarray(cfg.min_areas), cls=score, blank=blank
    )
    return result, {
        "threshold": result.threshold,
        "min_area": result.min_area,
        "empty_threshold": result.empty_threshold,
        "gate": gate if score is not None else None,
        "blank_rule": cfg.blank_rule,
        "cv": result.score,
        "cv_at_0.5": result.score_at(0.5, 0, 0.0),
        "all_empty": float(np.mean(masks.reshape(len(masks), -1).max(axis=1) == 0)),
        "n_images": len(ids),
    }


def save_search(path: Path, result: SearchResult, ids: list[str]) -> None:
    """The whole search grid and per-image scores (RUN/search.npz), for the report."""
    np.savez_compressed(
        path,
        grid=result.grid.astype(np.float32),
        thresholds=result.thresholds,
        min_areas=result.min_areas,
        empty_thresholds=result.empty_thresholds,
        ids=np.array(ids),
        per_image=result.per_image.astype(np.float32),
    )


def search(
    run: Run,
    data_dir: str | os.PathLike | None = None,
    data: TrainData | None = None,
    gate: str | None = None,
) -> dict:
    """Search threshold x min-area (x gate) on the run's merged OOF; write thresholds.json
    (with the gate score, `gate` or the config's, and how the OOF was made: TTA and model
    files) and cv.png. Returns the thresholds."""
    from tgs.plots import plot_threshold_search
    from tgs.thresholds import check_gate

    cfg = run.config()
    gate = check_gate(gate or cfg.gate)
    data_dir = run.data_dir(data_dir)
    ids, probs, cls, folds = run.load_oof()
    data = data or load_data(data_dir)
    result, found = search_oof(ids, probs, cls, data, data_dir, cfg, gate)
    out = {
        **found,
        "folds": folds,
        "complete": len(ids) == len(data.ids),
        **run.oof_provenance(folds),
    }
    run.write_thresholds(out)
    save_search(run.search_path, result, ids)
    title = f"{cfg.name}: CV {result.score:.4f} on {len(ids)} OOF images, folds {folds}"
    plot_threshold_search(run.cv_plot_path, result, title)
    return out


def predict(run: Run, data_dir=None, out=None, batch_size: int = 256, tta=None) -> Path:
    """Fold ensemble x TTA on the test set -> submissions/<run>-cv<CV>.csv (+ manifest)."""
    from tgs.predict import predict_run

    return predict_run(run, data_dir, out, batch_size, tta)


def score(submission: str | os.PathLike, truth: str | os.PathLike) -> float:
    """Competition score of a submission CSV against a truth CSV (train.csv format)."""
    from tgs.submission import score_file

    return score_file(submission, truth)[0]


# -- the whole job -------------------------------------------------------------------------
@dataclass
class RunOptions:
    """What `tgs run` / scripts/train_folds.sh take."""

    config: str | None = None
    data: str | None = None
    folds: list[int] | None = None
    run: str | None = None
    folds_csv: str | None = None
    resume: bool = False
    overrides: list[str] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)  # folds in parallel waves, one per GPU
    jobs: int | None = None  # folds at once in their own processes (default: the config's `jobs`)
    nproc: int = 0  # processes per fold (torchrun, DDP); 0: the config's `nproc`
    torchrun: list[str] = field(default_factory=list)  # rendezvous options for several nodes
    report: bool = True


def _has_data(d: Path) -> bool:
    return all((d / p).exists() for p in ("train.csv", "train/images", "sample_submission.csv"))


def resolve_data(data: str | None, config: str | None) -> tuple[Path, str | None]:
    """(data folder, config) as `tgs run` finds them when not given: data/ or
    data/competition (unpacking data/<competition>.zip first), else synthetic data in
    data/synth with configs/demo.yaml."""
    if data:
        return Path(data), config
    from tgs import COMPETITION

    root = Path("data")
    if not (root / "train.csv").is_file() and (root / f"{COMPETITION}.zip").is_file():
        from tgs.data.prepare import prepare

        if not _has_data(root / "competition"):
            prepare(root / f"{COMPETITION}.zip", root / "competition")
    for candidate in (root, root / "competition"):
        if _has_data(candidate):
            return candidate, config
    synth_dir = root / "synth"
    if not _has_data(synth_dir):
        from tgs.data.synth import synth

        synth(synth_dir, n_train=600, n_test=200, seed=0)
        log.info("wrote synthetic data to %s (600 train, 200 test)", synth_dir)
    return synth_dir, config or str(CONFIGS / "demo.yaml")


def default_config() -> str:
    import torch

    return str(CONFIGS / ("resnet34.yaml" if torch.cuda.is_available() else "cpu.yaml"))


def ensure_folds(path: Path, data: TrainData, cfg: Config) -> None:
    if path.is_file():
        return
    from tgs.folds import make_folds, save_folds

    save_folds(make_folds(data.ids, data.masks, data.z, cfg.n_folds, cfg.fold_seed), path)
    log.info("wrote %s (%d folds, seed %d)", path, cfg.n_folds, cfg.fold_seed)


def _train_command(run: Run, data: Path, fold: int, resume: bool, opts: RunOptions) -> list[str]:
    """`python -m tgs train` for one fold of an existing run (its resolved config and folds),
    under torchrun when nproc > 1."""
    launcher = [sys.executable, "-m"]
    if opts.nproc > 1:
        rendezvous = opts.torchrun or ["--standalone"]
        launcher += ["torch.distributed.run", *rendezvous, "--nproc_per_node", str(opts.nproc)]
        launcher += ["-m"]
    args = ["tgs", "train", "--config", str(run.config_path), "--data", str(data)]
    args += ["--folds", str(run.folds_path), "--fold", str(fold), "--run-dir", str(run.root)]
    return launcher + args + (["--resume"] if resume else [])


def _folds_at_once(opts: RunOptions, n: int) -> int:
    """How many of `n` folds train at once: one per GPU with --gpus (whatever `jobs` says),
    else `jobs`."""
    return min(n, len(opts.gpus) or max(1, opts.jobs))


def _cpu_ranks(opts: RunOptions) -> int:
    """DDP ranks per fold that train on CPU cores (`--nproc` without a GPU), else 1."""
    import torch

    on_cpu = not opts.gpus and not torch.cuda.is_available()
    return max(1, opts.nproc) if on_cpu else 1


FOLD_LAUNCHED = "TGS_FOLD_LAUNCHED"  # time.time() when `tgs run` launched a fold's process


def _child_env(gpu: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env[FOLD_LAUNCHED] = repr(time.time())  # its imports and start count to the fold's budget
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _start_fold(run: Run, cmd: list[str], k: int, gpu: str | None, logged: bool):
    """One fold's child process; with `logged`, its output goes to RUN/fold{k}.log."""
    if not logged:
        log.info("== fold %d", k)
        return subprocess.Popen(cmd, env=_child_env(gpu))
    where = f"GPU {gpu}" if gpu is not None else "its own process"
    log.info("== fold %d on %s (log %s)", k, where, run.fold_log(k))
    with open(run.fold_log(k), "w") as out:
        return subprocess.Popen(cmd, env=_child_env(gpu), stdout=out, stderr=subprocess.STDOUT)


def _train_in_children(
    run: Run, data_dir: Path, todo: list[int], opts: RunOptions, cores: int = 0, ranks: int = 1
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
            where = f" (see {run.fold_log(failed[0])})" if logged else ""
            raise TGSError(f"fold {failed[0]} failed{where}")


@dataclass
class RunResult:
    run: Run
    cv: float
    submission: Path
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


def run_pipeline(opts: RunOptions) -> RunResult:
    """Data -> folds -> every fold trained -> threshold search -> submission (-> report).
    On a node other than rank 0 of a multi-node run, only the training ranks run."""
    from tgs.train import validate_config

    t0 = time.time()
    if len(opts.gpus) == 1:  # before anything touches CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = opts.gpus[0]
    data_dir, config = resolve_data(opts.data, opts.config)
    config = config or default_config()
    cfg = load_config(config, opts.overrides)  # + the launch flags, saved with the run:
    cfg = replace(cfg, jobs=opts.jobs or cfg.jobs, nproc=opts.nproc or cfg.nproc)
    validate_config(cfg)
    opts.jobs, opts.nproc = cfg.jobs, cfg.nproc
    folds = opts.folds if opts.folds is not None else cfg.folds or list(range(cfg.n_folds))
    at_once, ranks = _folds_at_once(opts, len(folds)), _cpu_ranks(opts)
    cores = (os.cpu_count() or 1) if at_once * ranks > 1 and not cfg.threads else 0
    if cores:  # split the cores between the folds (and their DDP ranks) trained at once
        cfg = replace(cfg, threads=max(1, cores // (at_once * ranks)))
    main_node = _check_launch(opts, cfg)
    run = Run(opts.run or Run.default_root(cfg))
    if not opts.resume and any(run.started(k) for k in run.folds()):
        raise TGSError(
            f"{run.root} already holds trained folds: pass --resume to continue it, or --run NEW"
        )
    folds_csv = Path(opts.folds_csv or default_folds_csv(data_dir, cfg))
    log.info(
        "== config %s | data %s | run %s | folds %s of %s",
        config,
        data_dir,
        run.root,
        folds,
        folds_csv,
    )
    data = load_data(data_dir)
    ensure_folds(folds_csv, data, cfg)
    from tgs.folds import load_folds

    folds_df = load_folds(folds_csv, ids=data.ids)
    missing = sorted(set(folds) - set(folds_df["fold"]))
    if missing:
        raise TGSError(f"fold {missing[0]} is not in {folds_csv}")
    run.create(cfg, data_dir, folds_csv)
    todo = [k for k in folds if not (opts.resume and k in run.finished_folds())]
    for k in sorted(set(folds) - set(todo)):
        log.info("== fold %d already finished (%s): skipped", k, run.summary_path(k))
    if todo and cfg.budget_minutes:
        _plan(run, cfg, data, folds_df, todo, opts, data_dir, time.time() - t0, ranks)
    if opts.nproc > 1 or len(opts.gpus) > 1 or opts.jobs > 1:
        _train_in_children(run, data_dir, todo, opts, cores, ranks)
    else:
        for k in todo:
            log.info("== fold %d", k)
            resume = opts.resume and run.started(k)
            train_fold(run, cfg, data, folds_df, k, resume, started=time.time())
    if not main_node:
        return RunResult(run, math.nan, Path(), time.time() - t0)
    th = search(run, data_dir, data)
    sub = predict(run, data_dir)
    result = RunResult(run, th["cv"], sub, time.time() - t0)
    if (data_dir / "truth.csv").is_file():
        result.holdout_score = score(sub, data_dir / "truth.csv")
    if opts.report:
        result.report = _report(run, data_dir)
    result.seconds = time.time() - t0
    return result


def default_folds_csv(data_dir: Path, cfg: Config) -> Path:
    """folds/<data folder>-<k>f-s<seed>.csv: one folds file per data folder and split."""
    return Path("folds") / f"{Path(data_dir).name}-{cfg.n_folds}f-s{cfg.fold_seed}.csv"


def _plan(
    run, cfg, data, folds_df, todo, opts: RunOptions, data_dir: Path, spent: float, ranks: int
) -> None:
    """The budget plan for the folds to train: folds at once (GPUs or CPU jobs) make waves; CPU
    processes (jobs x their DDP ranks) are probed as many at once; DDP ranks split each epoch's
    steps (their gradient all-reduce is not probed: the per-fold refit measures it)."""
    from tgs.budget import ensure_plan
    from tgs.data.io import test_ids

    at_once = _folds_at_once(opts, len(todo))
    ensure_plan(
        run,
        cfg,
        data,
        folds_df,
        todo[0],
        waves=-(-len(todo) // at_once),
        n_models=len(todo),
        n_test=len(test_ids(data_dir)),
        spent=spent,
        parallel=1 if opts.gpus else at_once * ranks,
        world=max(1, opts.nproc),
    )


def _report(run: Run, data_dir: Path) -> Path:
    """The run's HTML report (RUN/report/index.html)."""
    from tgs.report import build_report

    return build_report(run, data_dir)
