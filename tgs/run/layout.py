"""Where the files of a run folder, its fold folders and a blend folder are: every run file
name is spelled here and nowhere else (the lock, checkpoints and blends ask this module).

RUN/
  config.yaml          the resolved config
  meta.json            commit, versions, data folder, folds file and its hash (Meta)
  folds.csv            a copy of the folds file the run was trained on
  plan.json            budgeted runs: measured epoch time and the epochs chosen (Plan)
  fold{k}/             best.pt, last.pt, snapshot{c}.pt, log.csv, oof.npz, summary.json,
                       plan.json (the fold's budget refits)
  fold{k}.log          a fold trained in a child process: its output
  thresholds.json      post-processing searched on the OOF (Thresholds)
  search.npz, cv.png   the whole search grid, and its plot
  pseudo/              `tgs pseudo`'s labelled set
  report/              `tgs report`'s page

BLEND/
  thresholds.json, search.npz, cv.png   as a run's, searched on the blended OOF
  blend.json           members, data folder, gate (Blend); written last
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tgs.run.records import Blend, FoldRefits, FoldSummary, Meta, Plan, PseudoLabels, Thresholds

CONFIG = "config.yaml"  # a folder with it is a run folder
BLEND = Blend.FILE  # a folder with it is a (finished) blend folder
FOLD_GLOB = "fold*"  # the fold folders of a run (see FOLD_DIR)
FOLD_DIR = re.compile(r"^fold(\d+)$")
_SNAPSHOT = re.compile(r"^snapshot(\d+)\.pt$")


def made_by_tgs(folder: Path) -> bool:
    """Whether `folder` is a run or blend folder (it holds config.yaml or blend.json)."""
    return (folder / CONFIG).is_file() or (folder / BLEND).is_file()


@dataclass(frozen=True)
class FoldPaths:
    """The files of one fold folder, RUN/fold{k}."""

    dir: Path

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    @property
    def last(self) -> Path:
        """The checkpoint a resumed fold continues from (model, optimizer, RNG, history)."""
        return self.dir / "last.pt"

    def snapshot(self, cycle: int) -> Path:
        return self.dir / f"snapshot{int(cycle)}.pt"

    def snapshots(self) -> list[Path]:
        """The fold's cycle snapshots on disk, in cycle order."""
        found = ((_SNAPSHOT.match(p.name), p) for p in self.dir.glob("snapshot*.pt"))
        return [p for _, p in sorted((int(m.group(1)), p) for m, p in found if m)]

    @property
    def log(self) -> Path:
        return self.dir / "log.csv"

    @property
    def oof(self) -> Path:
        return self.dir / "oof.npz"

    @property
    def summary(self) -> Path:
        return self.dir / FoldSummary.FILE

    @property
    def refits(self) -> Path:
        """The fold's budget refits (FoldRefits)."""
        return self.dir / FoldRefits.FILE


@dataclass(frozen=True)
class RunPaths:
    """The files of a run folder."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def meta(self) -> Path:
        return self.root / Meta.FILE

    @property
    def folds(self) -> Path:
        return self.root / "folds.csv"

    @property
    def plan(self) -> Path:
        return self.root / Plan.FILE

    @property
    def thresholds(self) -> Path:
        return self.root / Thresholds.FILE

    @property
    def search(self) -> Path:
        """The whole post-processing grid and per-image scores at the optimum."""
        return self.root / "search.npz"

    @property
    def cv_plot(self) -> Path:
        return self.root / "cv.png"

    @property
    def pseudo(self) -> Path:
        """`tgs pseudo`'s labelled set of confident test predictions (competition layout)."""
        return self.root / "pseudo"

    @property
    def pseudo_labels(self) -> Path:
        return self.pseudo / PseudoLabels.FILE

    @property
    def report(self) -> Path:
        return self.root / "report"

    def fold(self, k: int) -> FoldPaths:
        return FoldPaths(self.root / f"fold{int(k)}")

    def fold_log(self, k: int) -> Path:
        """The output of fold k trained in a child process (`tgs run --jobs/--gpus`)."""
        return self.root / f"fold{int(k)}.log"

    def fold_numbers(self) -> list[int]:
        """Every fold with a folder, in order."""
        found = (FOLD_DIR.match(p.name) for p in self.root.glob(FOLD_GLOB) if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)


def fold_of(checkpoint: Path) -> tuple[Path, int] | None:
    """(run folder, fold) of a checkpoint inside a run's fold folder, else None."""
    found = FOLD_DIR.match(checkpoint.parent.name)
    run = checkpoint.parent.parent
    return (run, int(found.group(1))) if found and (run / CONFIG).is_file() else None


@dataclass(frozen=True)
class BlendPaths:
    """The files of a blend folder (`tgs blend --out BLEND`)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def blend(self) -> Path:
        return self.root / BLEND

    @property
    def thresholds(self) -> Path:
        return self.root / Thresholds.FILE

    @property
    def search(self) -> Path:
        return self.root / "search.npz"

    @property
    def cv_plot(self) -> Path:
        return self.root / "cv.png"
