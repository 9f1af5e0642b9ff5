"""What a run folder holds, read once for the report: config, meta, folds, logs, thresholds,
search grid and submission. Nothing is recomputed here; what is absent is listed as missing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tgs.core import commands
from tgs.core.config import Config, dump_config
from tgs.core.errors import DamagedFileError
from tgs.run.folder import Run, read_npz
from tgs.run.records import FoldRefit, FoldSummary, Manifest, Meta, Plan, Thresholds

log = logging.getLogger(__name__)


@dataclass
class FoldFacts:
    """One fold as the run folder holds it."""

    k: int
    status: str  # "finished" | "training" | "not started"
    summary: FoldSummary | None = None  # summary.json, once the fold finished
    log: pd.DataFrame | None = None  # epoch, stage, loss, val_score, lr, seconds
    refits: list[FoldRefit] = field(default_factory=list)  # foldK/plan.json's, oldest first

    @property
    def replan(self) -> FoldRefit | None:
        """The fold's schedule as its last budget refit laid it out (None before any)."""
        return self.refits[-1] if self.refits else None

    @property
    def epochs_done(self) -> int:
        return 0 if self.log is None else len(self.log)


@dataclass
class Submission:
    """A submission CSV of the run and its manifest (with Kaggle's scores when recorded)."""

    csv: Path
    manifest: Manifest


@dataclass
class Facts:
    """Everything the report shows that the run stored, plus what it lacks (`missing`)."""

    run: Run
    cfg: Config
    meta: Meta  # empty when the run has no meta.json
    has_meta: bool
    plan: Plan | None
    folds: list[FoldFacts]
    thresholds: Thresholds | None
    search: dict[str, np.ndarray] | None
    submission: Submission | None
    missing: list[str] = field(default_factory=list)

    @property
    def finished(self) -> list[int]:
        return [f.k for f in self.folds if f.status == "finished"]

    @property
    def planned_epochs(self) -> int:
        """Epochs per fold: the budget plan's when the run has one (plan.json), else the
        config's (both stages)."""
        if self.cfg.budget_minutes and self.plan:
            return self.plan.total_epochs
        return self.cfg.epochs + self.cfg.stage2_epochs

    def fold_epochs(self, f: FoldFacts) -> int:
        """Epochs fold `f` is to train: its refit schedule when it has one, else the plan's."""
        if self.cfg.budget_minutes and f.replan:
            return f.replan.total_epochs
        return self.planned_epochs

    def config_diff(self) -> list[tuple[str, Any, Any]]:
        """(key, run value, default value) for every config key that differs from Config()."""
        default = Config().to_dict()
        return [(k, v, default[k]) for k, v in self.cfg.to_dict().items() if v != default[k]]

    def config_text(self) -> str:
        return dump_config(self.cfg)

    def train_seconds(self) -> float:
        """Training wall time: the sum of every fold's epoch times (logs, finished or not)."""
        return float(sum(f.log["seconds"].sum() for f in self.folds if f.log is not None))


LOG_COLUMNS = ("epoch", "loss", "val_score", "seconds")


def _read_log(path: Path, rebuild: str) -> pd.DataFrame | None:
    """A fold's log.csv (None before its first epoch); TGSError naming it when damaged."""
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.EmptyDataError) as e:
        df, problem = None, str(e).splitlines()[0]
    else:
        missing = [c for c in LOG_COLUMNS if c not in df.columns]
        problem = f"no {', '.join(missing)} column" if missing else None
    if problem:
        raise DamagedFileError(
            f"{path} is damaged ({problem}): training rewrites it each epoch (`{rebuild}` for "
            "an unfinished fold); for a finished fold restore it, or delete it to report "
            "without that fold's curves"
        )
    return df if len(df) else None


def expected_folds(run: Run, cfg: Config) -> list[int]:
    """Folds the run is meant to have: the config's `folds` (else all n_folds) and any on disk."""
    wanted = cfg.folds if cfg.folds is not None else list(range(cfg.n_folds))
    return sorted(set(wanted) | set(run.folds()))


def read_folds(run: Run, cfg: Config) -> list[FoldFacts]:
    finished = set(run.finished_folds())
    out = []
    for k in expected_folds(run, cfg):
        log_df = _read_log(run.fold(k).log, str(commands.train_fold(run.root, k)))
        if k in finished:
            status = "finished"
        elif log_df is not None or run.started(k) or run.fold(k).best.is_file():
            status = "training"
        else:
            status = "not started"
        out.append(FoldFacts(k, status, run.summary(k), log_df, run.plans.refits(k)))
    return out


def read_search(run: Run) -> dict[str, np.ndarray] | None:
    """search.npz as arrays (grid (T, A, E), thresholds, min_areas, empty_thresholds, ids,
    per_image), or None when the search has not been run (or predates search.npz)."""
    if not run.paths.search.is_file():
        return None
    rebuild = str(commands.threshold(run.root))
    return read_npz(run.paths.search, ("grid", "thresholds", "min_areas"), rebuild)


def read_submission(run: Run, thresholds: Thresholds | None) -> Submission | None:
    """The run's submission: submissions/<run>-cv<CV>.csv at the thresholds' CV, if written."""
    if thresholds is None or thresholds.cv is None:
        return None
    csv = run.submission_path(thresholds.cv)
    manifest = Manifest.path_for(csv)
    if not csv.is_file():
        return None
    made = Manifest.read(manifest) if manifest.is_file() else Manifest(submission=csv.name)
    return Submission(csv, made)


def _missing(facts: Facts) -> list[str]:
    """Plain sentences naming what the run lacks and the command that makes it."""
    run, notes = facts.run, []
    rethreshold = commands.threshold(run.root)
    for f in facts.folds:
        if f.status == "not started":
            notes.append(f"fold {f.k}: not started")
        elif f.status == "training":
            notes.append(
                f"fold {f.k}: still training or stopped ({f.epochs_done}/{facts.fold_epochs(f)} "
                "epochs logged, no summary.json/oof.npz yet)"
            )
    if facts.thresholds is None:
        notes.append(
            f"thresholds.json: no post-processing search yet (`{rethreshold}`); OOF shown at "
            "p > 0.5"
        )
    elif facts.search is None:
        notes.append(f"search.npz: no search grid stored (rerun `{rethreshold}`)")
    elif sorted(facts.thresholds.folds or []) != facts.finished:
        notes.append(
            f"thresholds.json was searched on folds {facts.thresholds.folds}, but folds "
            f"{facts.finished} have finished: rerun `{rethreshold}`"
        )
    if facts.submission is None:
        cv = facts.thresholds.cv if facts.thresholds else None
        where = f"{run.submission_path(cv)} " if cv is not None else ""
        notes.append(f"submission: {where}not found (`{commands.predict(run.root)}`)")
    if not facts.has_meta:
        notes.append("meta.json: missing (commit, data folder and folds file unknown)")
    return notes


def read_facts(run: Run) -> Facts:
    """Read the run folder (TGSError when it is not one)."""
    run.require()
    cfg = run.config()
    thresholds = run.thresholds() if run.paths.thresholds.is_file() else None
    facts = Facts(
        run=run,
        cfg=cfg,
        meta=run.metadata(),
        has_meta=run.paths.meta.is_file(),
        plan=run.plans.plan(),
        folds=read_folds(run, cfg),
        thresholds=thresholds,
        search=read_search(run) if thresholds is not None else None,
        submission=read_submission(run, thresholds),
    )
    facts.missing = _missing(facts)
    return facts
