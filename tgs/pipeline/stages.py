"""The stages as functions over a `Run`: train a fold, search post-processing, predict, score.

Stages talk through the run folder and hand each other its records (a `FoldSummary`, the
`Thresholds`); each can be re-run alone. Training is imported lazily, so predicting never loads
it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from tgs.core.config import Config
from tgs.data.cache import load_train_cached
from tgs.data.io import TrainData
from tgs.post.oof import save_search, search_oof
from tgs.post.rule import check_gate
from tgs.predict.submission import score_file
from tgs.run.folder import Run
from tgs.run.lock import locks
from tgs.run.records import EncoderWeights, FoldSummary, Thresholds

log = logging.getLogger(__name__)


# -- stages --------------------------------------------------------------------------------
def weights_record(source) -> EncoderWeights | None:
    """What meta.json records of a run's pretrained encoder weights (a `WeightsSource`), None
    from scratch."""
    return source.record() if source is not None else None


def load_data(data_dir: str | os.PathLike) -> TrainData:
    """The labelled set, decoded once per data folder (cached arrays)."""
    return load_train_cached(data_dir)


def fold_trainer(
    run: Run,
    cfg: Config,
    data: TrainData,
    folds,
    fold: int,
    *,
    dist=None,
    started: float | None = None,
):
    """The trainer of fold `fold` of `folds` (DataFrame id, fold) into the run, as training it
    builds one: the fold's schedule (its budget refit, else the run's plan), the thread count,
    the RNGs seeded with seed + fold, and the fold's callbacks (`fold_callbacks`).
    `started`: `time.time()` when this fold's work began (see `FoldTrainer`)."""
    # training is imported here only, so `tgs threshold` and predicting never load it
    import torch

    from tgs.budget.plan import apply_plan
    from tgs.budget.refit import fold_callbacks
    from tgs.train.rng import seed_everything
    from tgs.train.trainer import build_trainer

    cfg = apply_plan(cfg, run.plans.schedule(fold))  # the fold's refit schedule once it has one
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log.info("fold %d: %d CPU threads", fold, torch.get_num_threads())
    seed_everything(cfg.seed + fold)
    callbacks = fold_callbacks(cfg)
    return build_trainer(
        cfg, data, folds, fold, run, callbacks=callbacks, dist=dist, started=started
    )


def train_fold(
    run: Run,
    cfg: Config,
    data: TrainData,
    folds,
    fold: int,
    *,
    resume: bool = False,
    dist=None,
    started: float | None = None,
) -> FoldSummary | None:
    """Train fold `fold` into the run (continue it from last.pt with `resume`): the one way in
    to train a fold. Returns its summary (None on a non-zero rank of a distributed fold)."""
    return fold_trainer(run, cfg, data, folds, fold, dist=dist, started=started).fit(resume)


@locks("run", existing=True)
def search_thresholds(
    run: Run,
    data_dir: str | os.PathLike | None = None,
    data: TrainData | None = None,
    gate: str | None = None,
) -> Thresholds:
    """Search threshold x min-area (x gate) on the run's merged OOF; write thresholds.json
    (with the gate score, `gate` or the config's, and how the OOF was made: TTA and model
    files), search.npz and cv.png. Returns the thresholds written."""
    from tgs.post.plot import plot_threshold_search  # matplotlib: only when plotting

    cfg = run.config()
    gate = check_gate(gate or cfg.gate or "head")  # head: no gate without a head's scores
    data_dir = run.data_dir(data_dir)
    ids, probs, cls, folds = run.load_oof()
    data = data or load_data(data_dir)
    result, found = search_oof(ids, probs, cls, data, data_dir, cfg=cfg, gate=gate)
    tta, models = run.oof_provenance(folds)
    th = replace(found, folds=folds, complete=len(ids) == len(data.ids), tta=tta, models=models)
    run.write(th)
    save_search(run.paths.search, result, ids)
    title = f"{cfg.name}: CV {result.score:.4f} on {len(ids)} OOF images, folds {folds}"
    plot_threshold_search(run.paths.cv_plot, result, title)
    return th


def predict(run: Run, data_dir=None, out=None, batch_size: int = 256, tta=None) -> Path:
    """Fold ensemble x TTA on the test set -> submissions/<run>-cv<CV>.csv (+ manifest)."""
    from tgs.predict.test_set import predict_run  # torch: not for `tgs threshold`

    return predict_run(run, data_dir, out=out, batch_size=batch_size, tta=tta)


def score(submission: str | os.PathLike, truth: str | os.PathLike) -> float:
    """Competition score of a submission CSV against a truth CSV (train.csv format)."""
    return score_file(submission, truth)[0]
