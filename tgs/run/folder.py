"""`Run`: a run folder, what every stage reads and writes through. Where its files are is
`Run.paths` (`tgs.run.layout`), its budget plan and refits `Run.plans` (`tgs.run.plans`), and
its JSON files are records (`tgs.run.records`), each written by `Run.write` or its store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from tgs.core import commands
from tgs.core.config import RUNTIME, Config, config_from_dict, config_keys, dump_config
from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.fileio import atomic_path, write_text
from tgs.core.meta import environment
from tgs.run.layout import FoldPaths, RunPaths
from tgs.run.plans import PlanStore
from tgs.run.records import (
    SUBMISSIONS_DIR,
    EncoderWeights,
    FoldSummary,
    Meta,
    Thresholds,
)

log = logging.getLogger(__name__)


def file_hash(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex, first 16 characters)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class Run:
    """A run folder: its config, records, folds, checkpoints and OOF."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.paths = RunPaths(self.root)
        self.plans = PlanStore(self.paths)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    @staticmethod
    def default_root(cfg: Config) -> Path:
        """runs/<config name>: where a run goes when no --run is given."""
        return Path("runs") / cfg.name

    @property
    def name(self) -> str:
        return self.root.name

    def fold(self, k: int) -> FoldPaths:
        """Fold k's files (`self.paths.fold(k)`)."""
        return self.paths.fold(k)

    def exists(self) -> bool:
        return self.paths.config.is_file()

    def require(self) -> Run:
        """Raise TGSError unless this is a run folder (has config.yaml)."""
        if not self.exists():
            raise TGSError(f"{self.root} is not a run folder (no config.yaml); train a fold first")
        return self

    # -- config and meta -------------------------------------------------------------------
    def config(self, check_hash: bool = True) -> Config:
        """The run's resolved config (old keys mapped with a warning); TGSError naming
        config.yaml when it is not YAML, holds a bad key or value, or (`check_hash`) is not the
        text whose hash meta.json recorded."""
        self.require()
        path = self.paths.config
        try:
            text = path.read_text()
            if check_hash:
                self._check_config_hash(text)
            values = yaml.safe_load(text)
            if values is not None and not isinstance(values, dict):
                raise TGSError(f"expected a mapping of config keys, got {type(values).__name__}")
            return config_from_dict(values or {})
        except (OSError, UnicodeDecodeError, yaml.YAMLError, TGSError) as e:
            raise DamagedFileError(
                f"{path} is damaged ({str(e).splitlines()[0]}): it is written when the run "
                f"starts and no other file holds it; restore it (`{commands.show_config()}` "
                "prints a config resolved) or train a new --run"
            ) from None

    def _check_config_hash(self, text: str) -> None:
        """TGSError when config.yaml is not the text meta.json recorded a hash of (cut short
        by a full disk or an editor); runs older than the hash are not checked."""
        try:
            recorded = self.metadata().config_sha256
        except TGSError:
            return  # meta.json itself is damaged: its own reader says so
        if recorded and recorded != hashlib.sha256(text.encode()).hexdigest():
            raise TGSError("not the config.yaml meta.json recorded: cut short or edited")

    def metadata(self) -> Meta:
        """meta.json (empty when absent); TGSError naming it and the command that writes it
        again when it is damaged."""
        path = self.paths.meta
        again = commands.resume_run(self.root) + ["--data", "DATA"]
        return Meta.read(path, str(again)) if path.is_file() else Meta()

    def write(self, record: Meta | Thresholds | FoldSummary) -> None:
        """The one writer of the run's meta.json, thresholds.json and foldK/summary.json (the
        summary's `fold` says which)."""
        if isinstance(record, FoldSummary):
            if record.fold is None:
                raise TGSError("a fold summary without its fold cannot be written")
            record.write(self.paths.fold(record.fold).summary)
        elif isinstance(record, (Meta, Thresholds)):
            record.write(self.paths.root / record.FILE)
        else:
            raise TypeError(f"a run folder holds no {type(record).__name__}")

    def data_dir(self, override: str | os.PathLike | None = None) -> Path:
        """`override`, else the data folder the run was trained on (from meta.json)."""
        data = override or self.metadata().data
        if not data:
            raise TGSError(f"{self.root}: no data folder recorded in meta.json: pass --data")
        return Path(data)

    def create(
        self,
        cfg: Config,
        data_dir: str | os.PathLike | None = None,
        folds_csv: str | os.PathLike | None = None,
        weights: EncoderWeights | None = None,
    ) -> Run:
        """Write config.yaml, meta.json and a copy of the folds file (each only when it changes);
        refuse a run folder that was made with another config or other folds."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = dump_config(cfg)
        path = self.paths.config
        if path.exists() and path.read_text() != text:
            old = self.config(check_hash=False).to_dict()  # both are rewritten below
            changed = {k for k, v in cfg.to_dict().items() if old.get(k) != v}
            if changed - set(config_keys(RUNTIME)):  # runtime keys may change
                raise TGSError(
                    f"{self.root} was made with another config ({path}: "
                    f"{', '.join(sorted(changed))} differ); use a new --run"
                )
            log.info("%s: runtime settings now %s", self.root, sorted(changed))
        if not path.is_file() or path.read_text() != text:
            write_text(path, text)  # unchanged on a resume: left as it is
        try:
            earlier = self.metadata()
        except TGSError as e:  # rewritten now: what it said is lost
            log.warning("warning: %s; writing a new one", e)
            earlier = Meta()
        meta = replace(
            earlier, **environment(), config_sha256=hashlib.sha256(text.encode()).hexdigest()
        )
        if weights is not None:
            meta = replace(meta, encoder_weights=weights)
        if data_dir is not None:
            meta = replace(meta, data=str(Path(data_dir).resolve()))
        if folds_csv is not None:
            meta = replace(meta, folds=str(folds_csv), folds_sha256=self._adopt_folds(folds_csv))
        if meta != earlier:
            self.write(meta)
        return self

    def _adopt_folds(self, folds_csv: str | os.PathLike) -> str:
        """Copy the folds file into the run (its hash returned); refuse other folds than the
        run's own."""
        folds_csv, digest = Path(folds_csv), file_hash(folds_csv)
        own = self.paths.folds
        if own.is_file() and file_hash(own) != digest:
            raise TGSError(
                f"{self.root} was trained on other folds ({own}) than {folds_csv}; use a new --run"
            )
        if not own.is_file():
            write_text(own, folds_csv.read_text())
        return digest

    # -- folds -----------------------------------------------------------------------------
    def folds(self) -> list[int]:
        """Every fold with a folder, in order."""
        return self.paths.fold_numbers()

    def trained_folds(self) -> list[int]:
        """Folds that have a best checkpoint (can predict)."""
        return [k for k in self.folds() if self.fold(k).best.is_file()]

    def finished_folds(self) -> list[int]:
        """Folds whose training finished (summary.json and oof.npz written)."""
        return [
            k for k in self.folds() if self.fold(k).summary.is_file() and self.fold(k).oof.is_file()
        ]

    def started(self, k: int) -> bool:
        return self.fold(k).last.is_file()

    def model_files(self, k: int) -> list[Path]:
        """The checkpoints fold k predicts with: its cycle snapshots if any, else best.pt. OOF,
        thresholds, predict, bench and the Kaggle kernel all use this answer."""
        return self.fold(k).snapshots() or [self.fold(k).best]

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
        path = self.fold(k).summary
        return (
            FoldSummary.read(path, str(commands.train_fold(self.root, k)))
            if path.is_file()
            else None
        )

    # -- OOF -------------------------------------------------------------------------------
    def save_oof(
        self, k: int, ids: list[str], probs: np.ndarray, cls: np.ndarray | None = None
    ) -> None:
        """Fold k's OOF: float16 probabilities (N, 101, 101), ids, and salt-present
        probabilities (N,) from a classifier head; atomically."""
        extra = {} if cls is None else {"cls": cls.astype(np.float32)}
        with atomic_path(self.fold(k).oof) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, ids=np.array(ids), probs=probs.astype(np.float16), **extra)

    def load_oof(
        self, folds: list[int] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray | None, list[int]]:
        """Merge the oof.npz of `folds` (default: every trained fold) -> (ids, float16
        probabilities (N, 101, 101), salt-present probabilities (N,) or None, folds used)."""
        ids, probs, cls, used = [], [], [], []
        for k in self.trained_folds() if folds is None else folds:
            rebuild = str(commands.train_fold(self.root, k))
            path = self.fold(k).oof
            if not path.is_file():
                raise TGSError(f"{path} missing: fold {k} did not finish: `{rebuild}`")
            z = read_npz(path, ("ids", "probs"), rebuild)
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

    def oof_provenance(self, folds: list[int]) -> tuple[str, list[str]]:
        """How the OOF of `folds` was made, from their summaries: (its TTA, the model files each
        fold's OOF averaged). Folds made with different TTAs cannot share one search."""
        summaries = {k: self.summary(k) or FoldSummary() for k in folds}
        tta = {s.tta or "hflip" for s in summaries.values()}
        if len(tta) > 1:
            raise TGSError(f"{self.root}: folds' OOF were made with different TTAs {sorted(tta)}")
        models = []
        for k, s in summaries.items():
            models += s.models or [self.relative(f) for f in self.model_files(k)]
        return tta.pop(), models

    # -- thresholds and submissions --------------------------------------------------------
    def thresholds(self) -> Thresholds:
        """thresholds.json (TGSError naming `tgs threshold` when missing or broken)."""
        return Thresholds.read(self.paths.thresholds)

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
            f"{self.paths.thresholds} was searched on OOF of {th.models}, but {self.root} now "
            f"predicts with {now}: run `{commands.threshold(self.root)}` first"
        )

    def submission_path(self, cv: float, folder: str | os.PathLike = SUBMISSIONS_DIR) -> Path:
        """submissions/<run>-cv<CV>.csv (a .json manifest goes beside it)."""
        return Path(folder) / f"{self.name}-cv{cv:.4f}.csv"


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
