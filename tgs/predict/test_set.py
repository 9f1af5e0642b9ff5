"""Fold ensemble x TTA on the test set -> post-processing -> validated submission.

Imports nothing from training: the Kaggle kernel runs exactly this."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tgs.core.faults import fault_point
from tgs.core.meta import git_commit
from tgs.data import rle
from tgs.data.inputs import InputSpec
from tgs.data.io import iter_test_images, read_depths, require_depths, test_ids
from tgs.post.rule import PostProcessing
from tgs.predict.ensemble import mean_prediction
from tgs.predict.inference import Runtime, load_models, predict_array
from tgs.predict.submission import write_submission
from tgs.predict.tta import check_tta
from tgs.run.folder import Run
from tgs.run.lock import run_lock, sweep_unfinished
from tgs.run.records import SUBMISSIONS_DIR, Manifest, Thresholds

log = logging.getLogger(__name__)


def test_depths(data_dir: Path, ids: list[str], spec: InputSpec) -> np.ndarray | None:
    """Depths z for the test ids when the models take a depth channel (DataError if missing)."""
    if not spec.depth:
        return None
    z = read_depths(data_dir / "depths.csv").reindex(ids).to_numpy(dtype=float)
    require_depths(ids, z, data_dir / "depths.csv")
    return z


def check_tta_matches(th: Thresholds, tta: str) -> str | None:
    """A warning when `tta` differs from the TTA the thresholds were searched with."""
    searched = th.tta
    if searched is None or searched == tta:
        return None
    return (
        f"predicting with tta={tta!r}, but the thresholds were searched on OOF made with "
        f"tta={searched!r}: the threshold/min-area may not fit these probabilities"
    )


@dataclass
class TestBatch:
    """One batch of the test set: ids, uint8 images (B, 101, 101), ensemble probabilities
    (B, 101, 101), salt-present probabilities (B,) or None, post-processed masks (B, 101, 101)."""

    ids: list[str]
    images: np.ndarray
    probs: np.ndarray
    cls: np.ndarray | None
    masks: np.ndarray


@dataclass
class RunEnsemble:
    """A run's prediction models, loaded once: test images -> its fold ensemble x `tta`."""

    models: list[torch.nn.Module]
    rt: Runtime
    spec: InputSpec
    batch_size: int
    tta: str
    depths: np.ndarray | None

    @classmethod
    def load(cls, run: Run, data_dir: Path, ids: list[str], tta: str) -> RunEnsemble:
        """`run`'s prediction files on its config's device, AMP and inputs, with the depths of
        the test `ids` where its models take a depth channel."""
        cfg = run.config()
        rt, spec = Runtime.from_config(cfg), InputSpec.from_config(cfg)
        models = load_models(run.prediction_files(), rt)
        return cls(models, rt, spec, cfg.val_batch_size, tta, test_depths(data_dir, ids, spec))

    def __call__(self, images: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 images (B, 101, 101), the index of the first in the test ids (batches come in
        `ids` order) -> (probabilities (B, 101, 101), salt-present probabilities (B,) or None)."""
        z = None if self.depths is None else self.depths[start : start + len(images)]
        return predict_array(
            self.models, images, self.rt, self.batch_size, self.tta, z=z, spec=self.spec
        )


def ensemble_batches(
    members: list[RunEnsemble],
    weights: list[float],
    th: Thresholds,
    data_dir: Path,
    ids: list[str],
    *,
    batch_size: int,
    stats: dict,
) -> Iterator[TestBatch]:
    """The weighted mean of `members`' probabilities over the test set in batches (the head's
    only where every member has one: `mean_prediction`), post-processed by thresholds `th`;
    `stats` gets n_models and model_seconds."""
    rule = PostProcessing.from_thresholds(th)
    n_models = sum(len(m.models) for m in members)
    done, stats["model_seconds"], stats["n_models"] = 0, 0.0, n_models
    desc = f"predict {n_models} models x {'/'.join(sorted({m.tta for m in members}))}"
    bar = tqdm(total=len(ids), desc=desc, unit="img")
    with torch.inference_mode():
        for chunk, images in iter_test_images(data_dir, ids, batch_size):
            t_model = time.time()
            outs = [m(images, done) for m in members]
            stats["model_seconds"] += time.time() - t_model
            done += len(images)
            probs, cls = mean_prediction(outs, weights)
            yield TestBatch(chunk, images, probs, cls, rule.apply(probs, cls, images))
            bar.update(len(images))
    bar.close()


def predict_batches(
    run: Run, data_dir: Path, batch_size: int, tta: str, stats: dict
) -> Iterator[TestBatch]:
    """The run's ensemble (its prediction files x `tta`) over the test set in batches, with the
    searched post-processing; `stats` gets n_models and model_seconds."""
    ids = test_ids(data_dir)
    member = RunEnsemble.load(run, data_dir, ids, tta)
    th = run.thresholds()
    batches = ensemble_batches(
        [member], [1.0], th, data_dir, ids, batch_size=batch_size, stats=stats
    )
    for batch in batches:
        fault_point("predict")
        yield batch


def run_tta(run: Run, tta: str | None) -> tuple[str, str | None]:
    """(the TTA to predict with: `tta`, else the thresholds', else the config's; a warning when
    it differs from the one the thresholds were searched with)."""
    th = run.thresholds()
    tta = check_tta(tta or th.tta or run.config().tta)
    mismatch = check_tta_matches(th, tta)
    if mismatch:
        log.warning("warning: %s", mismatch)
    return tta, mismatch


def predict_run(
    run: Run | str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    batch_size: int = 256,
    tta: str | None = None,
    submissions_dir: str | os.PathLike = SUBMISSIONS_DIR,
    lock: bool = True,
) -> Path:
    """Write the run's submission (and a .json manifest beside it); returns the CSV path.

    Predicts with `run.prediction_files()` (the checkpoints the OOF was made with) and the run's
    TTA unless `tta` is given (a different one is warned about). Holds the run's writer lock
    unless `lock` is False (a run nobody can write: a kernel's read-only input)."""
    run = run if isinstance(run, Run) else Run(run)
    with run_lock(run.root) if lock and run.exists() else nullcontext():
        return _predict_run(
            run, data_dir, out=out, batch_size=batch_size, tta=tta, submissions_dir=submissions_dir
        )


def _predict_run(run: Run, data_dir, *, out, batch_size: int, tta, submissions_dir) -> Path:
    cfg, th = run.config(), run.thresholds()
    data_dir = run.data_dir(data_dir)
    tta, mismatch = run_tta(run, tta)
    folds = th.folds or run.trained_folds()
    if stale := run.stale_thresholds(th):
        mismatch = (mismatch + "; " if mismatch else "") + stale
        log.warning("warning: %s", mismatch)
    t0, stats = time.time(), {}
    batches = predict_batches(run, data_dir, batch_size, tta, stats)
    path = (
        Path(out)
        if out
        else run.submission_path(th.require_cv(run.paths.thresholds), submissions_dir)
    )
    about = Manifest(
        submission=path.name,
        run=str(run.root),
        folds=folds,
        models=run.prediction_models(th),
        tta=tta,
        warning=mismatch,
        config=cfg.to_dict(),
    )
    return write_predictions(path, batches, th, data_dir, about, t0=t0, stats=stats)


def write_predictions(
    path: Path,
    batches: Iterator[TestBatch],
    th: Thresholds,
    data_dir: Path,
    about: Manifest,
    *,
    t0: float,
    stats: dict,
) -> Path:
    """The batches' masks as a validated submission at `path`, and its .json manifest: `about`
    (what made it) completed with what every manifest records (data, thresholds, counts,
    commit, times; `stats` as `ensemble_batches` fills it, `t0` the start). Returns `path`."""
    ids, rles = [], []
    sweep_unfinished(path.parent, f".{path.name}.*.tmp")  # a killed predict's (we hold the lock)
    for batch in batches:
        ids.extend(batch.ids)
        rles.extend(rle.encode_batch(batch.masks))
    write_submission(path, ids, rles=rles, sample_ids=ids)
    manifest = replace(
        about,
        submission=path.name,
        data=str(data_dir),
        cv=th.cv,
        thresholds=th,
        n_images=len(ids),
        empty_predicted=float(np.mean([r == "" for r in rles])),
        commit=git_commit(),
        created=time.strftime("%Y-%m-%d %H:%M:%S"),
        seconds=round(time.time() - t0, 2),
        model_seconds=round(stats["model_seconds"], 2),
    )
    manifest.write(Manifest.path_for(path))
    return path
