"""A blend of finished runs: their OOF probabilities averaged on the same images, the
post-processing searched on that average, and the test set predicted by every run's fold
ensemble, averaged the same way -> one submission. The blend folder's files
(`tgs.run.layout.BlendPaths`): thresholds.json (the post-processing searched on the blended
OOF, as a run's), search.npz, cv.png, and blend.json (members: run, weight, TTA, folds,
models; data folder; gate), written last, so a blend folder with it is complete.

Members must be finished runs (thresholds.json) whose OOF covers the same images: runs made on
the same folds file, whatever their models, sizes or configs. Each member's OOF is taken from
the folds its thresholds were searched on, and each predicts the test set with the models and
TTA that OOF was made with, so test and OOF probabilities are averaged alike. The gate, min-areas
and blank rule are the first member's."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tgs.core import commands
from tgs.core.errors import TGSError
from tgs.data.cache import load_train_cached as load_data
from tgs.data.io import test_ids
from tgs.post.oof import save_search, search_oof
from tgs.post.rule import PostProcessing, check_gate
from tgs.predict.ensemble import mean_prediction
from tgs.predict.test_set import RunEnsemble, ensemble_batches, write_predictions
from tgs.run.folder import Run
from tgs.run.layout import BlendPaths
from tgs.run.lock import locks
from tgs.run.records import SUBMISSIONS_DIR, Blend, BlendMember, Manifest, Thresholds

log = logging.getLogger(__name__)


def check_weights(n_runs: int, weights: list[float] | None) -> list[float]:
    """`weights` (default: equal), one positive number per run."""
    weights = [1.0] * n_runs if weights is None else [float(w) for w in weights]
    if len(weights) != n_runs:
        raise TGSError(f"{len(weights)} weights for {n_runs} runs: give one weight per run")
    if any(not np.isfinite(w) or w <= 0 for w in weights):
        raise TGSError(f"weights must be positive numbers, got {weights}")
    return weights


def blend_oof(
    runs: list[Run], weights: list[float], folds: list[list[int] | None] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The members' merged OOF (`folds[i]` of run i, default every trained fold), averaged with
    `weights` (normalised to sum 1) in the first member's id order -> (ids, float32
    probabilities (N, 101, 101), salt-present probabilities (N,), or None unless every member
    has a head)."""
    folds = folds or [None] * len(runs)
    loaded = [r.load_oof(f) for r, f in zip(runs, folds, strict=True)]
    ids = loaded[0][0]
    outs = []
    for run, (other, probs, cls, _) in zip(runs, loaded, strict=True):
        missing, extra = len(set(ids) - set(other)), len(set(other) - set(ids))
        if missing or extra:
            raise TGSError(
                f"{run.root}'s OOF lacks {missing} of {runs[0].root}'s {len(ids)} images and has "
                f"{extra} others: blend runs made on the same folds file (and the same folds)"
            )
        where = {i: k for k, i in enumerate(other)}
        order = np.array([where[i] for i in ids])
        outs.append((probs[order], None if cls is None else cls[order]))
    probs, cls = mean_prediction(outs, weights)
    return ids, probs.astype(np.float32), cls


def _members(paths: list[Run | str | os.PathLike], out: Path) -> tuple[list[Run], list[Thresholds]]:
    """The member runs (finished, with current thresholds) and their thresholds, refusing an
    `out` that is a run."""
    runs = [p if isinstance(p, Run) else Run(Path(p).resolve()).require() for p in paths]
    if len(runs) < 2:
        raise TGSError("a blend needs two runs or more")
    if Run(out).exists() or out.resolve() in {r.root.resolve() for r in runs}:
        raise TGSError(f"--out {out} is a run folder: give the blend a folder of its own")
    if len({r.root.resolve() for r in runs}) < len(runs):
        log.warning("warning: a run is named twice in the blend: it counts twice")
    member_th = [r.thresholds() for r in runs]
    for r, th in zip(runs, member_th, strict=True):
        if stale := r.stale_thresholds(th):
            raise TGSError(stale)
    return runs, member_th


@locks("out")
def search_blend(
    runs: list[Run | str | os.PathLike],
    out: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    weights: list[float] | None = None,
    gate: str | None = None,
) -> Thresholds:
    """Search the blend's post-processing on its averaged OOF; write BLEND/thresholds.json,
    search.npz, cv.png and (last) blend.json. `gate` defaults to the first member's recorded
    gate. Returns the thresholds written."""
    from tgs.post.plot import plot_threshold_search  # matplotlib: only when plotting

    out, paths = Path(out), BlendPaths(out)
    members, member_th = _members(runs, out)
    weights = check_weights(len(members), weights)
    gate = check_gate(gate or PostProcessing.from_thresholds(member_th[0]).gate)
    data_dir = Path(members[0].data_dir(data_dir)).resolve()
    ids, probs, cls = blend_oof(members, weights, [th.folds for th in member_th])
    if gate == "mean" and cls is None:
        raise TGSError("gate mean needs a salt-present head in every run of the blend")
    cfg = members[0].config()
    result, th = search_oof(ids, probs, cls, load_data(data_dir), data_dir, cfg=cfg, gate=gate)
    if th.gate is None and gate == "head":
        log.warning("warning: not every run has a salt-present head: the blend has no head gate")
    th = replace(
        th,
        members_cv=[
            m.require_cv(r.paths.thresholds) for r, m in zip(members, member_th, strict=True)
        ],
    )
    out.mkdir(parents=True, exist_ok=True)
    th.write(paths.thresholds)
    save_search(paths.search, result, ids)
    names = " + ".join(r.root.name for r in members)
    plot_threshold_search(paths.cv_plot, result, f"blend {names}: CV {result.score:.4f}")
    blend = Blend(
        members=[
            BlendMember(
                run=str(r.root.resolve()),
                weight=w,
                tta=t.tta or r.config().tta,
                folds=t.folds,
                models=r.prediction_models(t),
                cv=t.cv,
            )
            for r, w, t in zip(members, weights, member_th, strict=True)
        ],
        data=str(data_dir),
        gate=th.gate,
    )
    blend.write(paths.blend)
    return th


def read_blend(out: str | os.PathLike) -> tuple[Blend, Thresholds]:
    """(blend.json, thresholds.json) of a finished blend folder (TGSError naming the file and
    `tgs blend` if it is not one or a file is broken)."""
    paths = BlendPaths(out)
    rebuild = str(commands.blend(paths.root))
    return Blend.read(paths.blend, rebuild), Thresholds.read(paths.thresholds, rebuild)


def blend_submission_path(out: Path, cv: float, folder: str | os.PathLike) -> Path:
    """submissions/blend-<name>-cv<CV>.csv (no second prefix for a folder named blend...)."""
    name = out.resolve().name
    return Path(folder) / f"{name if name.startswith('blend') else 'blend-' + name}-cv{cv:.4f}.csv"


@locks("out", existing=True)
def predict_blend(
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
    submissions_dir: str | os.PathLike = SUBMISSIONS_DIR,
) -> Path:
    """The blend's submission (and a .json manifest): every member's fold ensemble with its own
    TTA, averaged with the blend's weights, post-processed with the blend's thresholds. The test
    images come from `data_dir`, default the folder the blend was searched on."""
    t0, out = time.time(), Path(out)
    blend, th = read_blend(out)
    data_dir = Path(data_dir or blend.data)
    ids = test_ids(data_dir)
    members = []
    for m in blend.members:
        run = Run(m.run).require()
        now = run.prediction_models()
        if now != m.models:
            raise TGSError(
                f"{run.root} now predicts with {now}, but the blend was searched on OOF of "
                f"{m.models}: make the blend again"
            )
        members.append(RunEnsemble.load(run, data_dir, ids, m.tta))
    weights = [m.weight for m in blend.members]
    stats: dict = {}
    batches = ensemble_batches(
        members, weights, th, data_dir, ids, batch_size=batch_size, stats=stats
    )
    path = blend_submission_path(out, th.require_cv(BlendPaths(out).thresholds), submissions_dir)
    about = Manifest(
        submission=path.name,
        blend=str(out.resolve()),
        members=[m.to_dict() for m in blend.members],
    )
    return write_predictions(path, batches, th, data_dir, about, t0=t0, stats=stats)
