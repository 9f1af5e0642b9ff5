"""`Run`: the one owner of a run folder's layout. No other module builds a run path from strings.

RUN/
  config.yaml          resolved config (Config)
  meta.json            git commit, versions, data folder, folds file and its hash
  folds.csv            copy of the folds file the run was trained on
  plan.json            budgeted runs: measured epoch time and the epochs chosen
  fold{k}/             best.pt, last.pt, snapshot{c}.pt, log.csv, oof.npz, summary.json
  thresholds.json      post-processing searched on the OOF (+ how the OOF was made)
  cv.png               threshold search plot
  report/              `tgs report` output

Its JSON files are read and written through their records (`tgs.run.records`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import yaml

from tgs.core.config import Config, config_from_dict, config_keys, dump_config
from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.fileio import atomic_path, write_json, write_text
from tgs.core.meta import environment
from tgs.run.records import SUBMISSIONS_DIR, FoldRefits, FoldSummary, Plan, Thresholds

log = logging.getLogger(__name__)

_FOLD_DIR = re.compile(r"^fold(\d+)$")
_SNAPSHOT = re.compile(r"^snapshot(\d+)\.pt$")


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex, first 16 characters)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class Run:
    """A run folder: where every stage reads and writes its files."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @staticmethod
    def default_root(cfg: Config) -> Path:
        """runs/<config name>: where a run goes when no --run is given."""
        return Path("runs") / cfg.name

    @property
    def name(self) -> str:
        return self.root.name

    # -- run-level files -------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    @property
    def folds_path(self) -> Path:
        return self.root / "folds.csv"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def thresholds_path(self) -> Path:
        return self.root / "thresholds.json"

    @property
    def search_path(self) -> Path:
        """The whole post-processing grid and per-image scores at the optimum (search.npz)."""
        return self.root / "search.npz"

    @property
    def cv_plot_path(self) -> Path:
        return self.root / "cv.png"

    @property
    def pseudo_dir(self) -> Path:
        """`tgs pseudo`'s labelled set of confident test predictions (competition layout)."""
        return self.root / "pseudo"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def require(self) -> Run:
        """Raise TGSError unless this is a run folder (has config.yaml)."""
        if not self.exists():
            raise TGSError(f"{self.root} is not a run folder (no config.yaml); train a fold first")
        return self

    def config(self, check_hash: bool = True) -> Config:
        """The run's resolved config (old keys mapped with a warning); TGSError naming
        config.yaml when it is not YAML, holds a bad key or value, or (`check_hash`) is not the
        text whose hash meta.json recorded."""
        self.require()
        try:
            text = self.config_path.read_text()
            if check_hash:
                self._check_config_hash(text)
            values = yaml.safe_load(text)
            if values is not None and not isinstance(values, dict):
                raise TGSError(f"expected a mapping of config keys, got {type(values).__name__}")
            return config_from_dict(values or {})
        except (OSError, UnicodeDecodeError, yaml.YAMLError, TGSError) as e:
            raise DamagedFileError(
                f"{self.config_path} is damaged ({str(e).splitlines()[0]}): it is written when "
                "the run starts and no other file holds it; restore it (`tgs config --config "
                "CFG` prints a config resolved) or train a new --run"
            ) from None

    def _check_config_hash(self, text: str) -> None:
        """TGSError when config.yaml is not the text meta.json recorded a hash of (cut short
        by a full disk or an editor); runs older than the hash are not checked."""
        try:
            recorded = self.meta().get("config_sha256")
        except TGSError:
            return  # meta.json itself is damaged: its own reader says so
        if recorded and recorded != hashlib.sha256(text.encode()).hexdigest():
            raise TGSError("not the config.yaml meta.json recorded: cut short or edited")

    def meta(self) -> dict:
        """meta.json's fields ({} when absent); TGSError naming it when it is not a JSON object."""
        if not self.meta_path.is_file():
            return {}
        try:
            found = json.loads(self.meta_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            found = e
        if not isinstance(found, dict):
            raise DamagedFileError(
                f"{self.meta_path} is damaged ({found}): `{self.resume_command} --data DATA` "
                "writes it again (DATA: the data folder the run trained on)"
            )
        return found

    @property
    def resume_command(self) -> str:
        """The command that continues this run and rewrites its run-level files."""
        return f"python -m tgs run --config {self.config_path} --run {self.root} --resume"

    def data_dir(self, override: str | os.PathLike | None = None) -> Path:
        """`override`, else the data folder the run was trained on (from meta.json)."""
        data = override or self.meta().get("data")
        if not override and data and not isinstance(data, str):
            raise DamagedFileError(
                f"{self.meta_path}: data should be a folder, got {data!r}: pass --data, or "
                f"`{self.resume_command} --data DATA` writes it again"
            )
        if not data:
            raise TGSError(f"{self.root}: no data folder recorded in meta.json: pass --data")
        return Path(data)

    def create(
        self,
        cfg: Config,
        data_dir: str | os.PathLike | None = None,
        folds_csv: str | os.PathLike | None = None,
        extra: dict | None = None,
    ) -> Run:
        """Write config.yaml, meta.json and a copy of the folds file (each only when it changes);
        refuse a run folder that was made with another config or other folds."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(cfg)
        if self.config_path.exists() and self.config_path.read_text() != text:
            old = self.config(check_hash=False).to_dict()  # both are rewritten below
            changed = {k for k, v in cfg.to_dict().items() if old.get(k) != v}
            if changed - set(config_keys("runtime")):  # runtime keys may change
                raise TGSError(
                    f"{self.root} was made with another config ({self.config_path}: "
                    f"{', '.join(sorted(changed))} differ); use a new --run"
                )
            log.info("%s: runtime settings now %s", self.root, sorted(changed))
        if not self.config_path.is_file() or self.config_path.read_text() != text:
            write_text(self.config_path, text)  # unchanged on a resume: left as it is
        try:
            earlier = self.meta()
        except TGSError as e:  # rewritten now: what it said is lost
            log.warning("warning: %s; writing a new one", e)
            earlier = {}
        meta = {**earlier, **environment(), **(extra or {})}
        meta["config_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        if data_dir is not None:
            meta["data"] = str(Path(data_dir).resolve())
        if folds_csv is not None:
            meta.update(self._adopt_folds(Path(folds_csv)))
        if meta != earlier:
            write_json(self.meta_path, meta)
        return self

    def _adopt_folds(self, folds_csv: Path) -> dict:
        digest = file_hash(folds_csv)
        if self.folds_path.is_file() and file_hash(self.folds_path) != digest:
            raise TGSError(
                f"{self.root} was trained on other folds ({self.folds_path}) than {folds_csv}; "
                "use a new --run"
            )
        if not self.folds_path.is_file():
            write_text(self.folds_path, folds_csv.read_text())
        return {"folds": str(folds_csv), "folds_sha256": digest}

    # -- folds -----------------------------------------------------------------------------
    def fold_dir(self, k: int) -> Path:
        return self.root / f"fold{int(k)}"

    def best(self, k: int) -> Path:
        return self.fold_dir(k) / "best.pt"

    def last(self, k: int) -> Path:
        return self.fold_dir(k) / "last.pt"

    def snapshot(self, k: int, cycle: int) -> Path:
        return self.fold_dir(k) / f"snapshot{int(cycle)}.pt"

    def log(self, k: int) -> Path:
        return self.fold_dir(k) / "log.csv"

    def oof(self, k: int) -> Path:
        return self.fold_dir(k) / "oof.npz"

    def summary_path(self, k: int) -> Path:
        return self.fold_dir(k) / "summary.json"

    def fold_log(self, k: int) -> Path:
        """stdout/stderr of a fold trained in a child process (--gpus waves)."""
        return self.root / f"fold{int(k)}.log"

    def folds(self) -> list[int]:
        """Every fold with a folder, in order."""
        found = (_FOLD_DIR.match(p.name) for p in self.root.glob("fold*") if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def trained_folds(self) -> list[int]:
        """Folds that have a best checkpoint (can predict)."""
        return [k for k in self.folds() if self.best(k).is_file()]

    def finished_folds(self) -> list[int]:
        """Folds whose training finished (summary.json and oof.npz written)."""
        return [k for k in self.folds() if self.summary_path(k).is_file() and self.oof(k).is_file()]

    def started(self, k: int) -> bool:
        return self.last(k).is_file()

    def snapshots(self, k: int) -> list[Path]:
        """Fold k's cycle snapshots, in cycle order."""
        snaps = self.fold_dir(k).glob("snapshot*.pt")
        numbered = sorted((int(m.group(1)), p) for p in snaps if (m := _SNAPSHOT.match(p.name)))
        return [p for _, p in numbered]

    def model_files(self, k: int) -> list[Path]:
        """The checkpoints fold k predicts with: its cycle snapshots if any, else best.pt. OOF,
        thresholds, predict, bench and the Kaggle kernel all use this answer."""
        return self.snapshots(k) or [self.best(k)]

    def all_model_files(self, folds: list[int] | None = None) -> list[Path]:
        """Model files of every trained fold (or `folds`), fold by fold."""
        folds = self.trained_folds() if folds is None else folds
        if not folds:
            raise TGSError(f"{self.root} has no trained fold (no fold*/best.pt)")
        return [f for k in folds for f in self.model_files(k)]

    def relative(self, path: Path) -> str:
        """`path` relative to the run folder, POSIX style (as recorded in JSON files)."""
        return Path(path).relative_to(self.root).as_posix()

    def summary(self, k: int) -> FoldSummary | None:
        """Fold k's summary.json (None before the fold finished)."""
        path = self.summary_path(k)
        rebuild = self.fold_command(k)
        return FoldSummary.read(path, rebuild) if path.is_file() else None

    def write_summary(self, k: int, summary: FoldSummary | dict) -> None:
        """Save fold k's summary.json (a dict is checked as a FoldSummary first)."""
        record = summary if isinstance(summary, FoldSummary) else FoldSummary.from_dict(summary)
        record.write(self.summary_path(k))

    # -- OOF -------------------------------------------------------------------------------
    def save_oof(
        self, k: int, ids: list[str], probs: np.ndarray, cls: np.ndarray | None = None
    ) -> None:
        """Fold k's OOF: float16 probabilities (N, 101, 101), ids, and salt-present
        probabilities (N,) from a classifier head; atomically."""
        extra = {} if cls is None else {"cls": cls.astype(np.float32)}
        with atomic_path(self.oof(k)) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, ids=np.array(ids), probs=probs.astype(np.float16), **extra)

    def fold_command(self, k: int) -> str:
        """The command that continues fold k, or rebuilds its OOF and summary once trained."""
        return f"python -m tgs train --run {self.root} --fold {k} --resume"

    def load_oof(
        self, folds: list[int] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray | None, list[int]]:
        """Merge the oof.npz of `folds` (default: every trained fold) -> (ids, float16
        probabilities (N, 101, 101), salt-present probabilities (N,) or None, folds used)."""
        ids, probs, cls, used = [], [], [], []
        for k in self.trained_folds() if folds is None else folds:
            if not self.oof(k).is_file():
                raise TGSError(
                    f"{self.oof(k)} missing: fold {k} did not finish: `{self.fold_command(k)}`"
                )
            z = read_npz(self.oof(k), ("ids", "probs"), self.fold_command(k))
            ids.extend(z["ids"].tolist())
            probs.append(z["probs"])
            cls.append(z.get("cls"))
            used.append(k)
        if not ids:
            raise TGSError(f"no fold in {self.root} has finished training")
        if len(set(ids)) != len(ids):
            raise TGSError(f"{self.root}: an id appears in two folds' OOF; were the folds changed?")
        merged_cls = None if any(c is None for c in cls) else np.concatenate(cls)
        return ids, np.concatenate(probs), merged_cls, used

    def oof_provenance(self, folds: list[int]) -> dict:
        """How the OOF was made, from the folds' summaries: its TTA and the model files each
        fold's OOF averaged. Folds made with different TTAs cannot share one search."""
        summaries = {k: self.summary(k) or FoldSummary() for k in folds}
        tta = {s.tta or "hflip" for s in summaries.values()}
        if len(tta) > 1:
            raise TGSError(f"{self.root}: folds' OOF were made with different TTAs {sorted(tta)}")
        models = []
        for k, s in summaries.items():
            models += s.models or [self.relative(f) for f in self.model_files(k)]
        return {"tta": tta.pop(), "models": models}

    # -- thresholds and submissions --------------------------------------------------------
    def thresholds(self) -> Thresholds:
        """thresholds.json (TGSError naming `tgs threshold` when missing or broken)."""
        return Thresholds.read(self.thresholds_path, self.threshold_command)

    @property
    def threshold_command(self) -> str:
        """The command that (re)writes thresholds.json."""
        return f"python -m tgs threshold --run {self.root}"

    def write_thresholds(self, values: Thresholds | dict) -> None:
        """Save thresholds.json (a dict is checked as a Thresholds first)."""
        record = values if isinstance(values, Thresholds) else Thresholds.from_dict(values)
        record.write(self.thresholds_path)

    def submission_path(self, cv: float, folder: str | os.PathLike = SUBMISSIONS_DIR) -> Path:
        """submissions/<run>-cv<CV>.csv (a .json manifest goes beside it)."""
        return Path(folder) / f"{self.name}-cv{cv:.4f}.csv"

    def plan(self) -> dict | None:
        """plan.json's fields (the `Plan` record's, checked), None without a budget plan."""
        return Plan.read(self.plan_path).to_dict() if self.plan_path.is_file() else None

    def write_plan(self, plan: dict) -> None:
        Plan.from_dict(plan).write(self.plan_path)

    def fold_plan_path(self, k: int) -> Path:
        """foldK/plan.json: the fold's own schedule, refit after its first epochs (budgeted)."""
        return self.fold_dir(k) / "plan.json"

    def fold_refit(self, k: int) -> dict | None:
        """Fold `k`'s own refit schedule (foldK/plan.json), None before its refit."""
        return self._fold_refits(k).to_dict()

    def _fold_refits(self, k: int) -> FoldRefits:
        path = self.fold_plan_path(k)
        rebuild = self.fold_command(k)
        return FoldRefits.read(path, rebuild) if path.is_file() else FoldRefits([])

    def fold_refits(self, k: int) -> list[dict]:
        """Fold `k`'s refits, oldest first (foldK/plan.json keeps the earlier under "previous")."""
        return self._fold_refits(k).refits

    def write_fold_refits(self, k: int, refits: list[dict]) -> None:
        """Save fold `k`'s refits (oldest first) as foldK/plan.json: the latest, which sets the
        fold's schedule, with the earlier ones nested under "previous"."""
        FoldRefits(list(refits)).write(self.fold_plan_path(k))

    def fold_plan(self, k: int) -> dict | None:
        """The fold's refit schedule, else the run's plan (None without a budget)."""
        return self.fold_refit(k) or self.plan()

    def write_fold_plan(self, k: int, plan: dict) -> None:
        """Save fold `k`'s refit schedule (`tgs.budget.replan`), earlier refits nested under
        "previous"."""
        FoldRefits.from_dict(plan).write(self.fold_plan_path(k))

    # -- Kaggle ----------------------------------------------------------------------------
    def prediction_files(self, th: Thresholds | None = None) -> list[Path]:
        """The checkpoints `predict` uses: the thresholds' folds' (else every trained fold's)
        model files. A staged copy of the run holds exactly these. `th`: the run's thresholds,
        when already read."""
        th = self.thresholds() if th is None else th
        return self.all_model_files(th.folds or self.trained_folds())

    def prediction_models(self, th: Thresholds | None = None) -> list[str]:
        """`prediction_files()` relative to the run, as thresholds.json's `models` names them."""
        return [self.relative(f) for f in self.prediction_files(th)]

    def stale_thresholds(self, th: Thresholds) -> str | None:
        """Why the run's thresholds `th` no longer fit the models it predicts with (they were
        searched on OOF of other checkpoints), or None."""
        now = self.prediction_models(th)
        if not th.models or th.models == now:
            return None
        return (
            f"{self.thresholds_path} was searched on OOF of {th.models}, but {self.root} now "
            f"predicts with {now}: run `{self.threshold_command}` first"
        )

    def kernel_submission_path(
        self, cv: float, folder: str | os.PathLike = SUBMISSIONS_DIR, tag: str = "kernel"
    ) -> Path:
        """submissions/<run>-<tag>-cv<CV>.csv: the submission a Kaggle kernel made (`kernel`:
        the run's inference kernel; `kaggle`: the kernel that trained the run)."""
        return Path(folder) / f"{self.name}-{tag}-cv{cv:.4f}.csv"


def read_npz(path: Path, keys: tuple[str, ...], rebuild: str) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path` (no pickles); TGSError naming the file and the
    `rebuild` command when it is missing, not an npz, truncated, or lacks one of `keys`."""
    if not path.is_file():
        raise TGSError(f"{path} missing: run `{rebuild}`")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        said = str(e).split(". ")[0]
        raise DamagedFileError(f"{path} is damaged ({said}): rebuild it with `{rebuild}`") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DamagedFileError(f"{path} lacks {', '.join(missing)}: rebuild it with `{rebuild}`")
    return arrays
