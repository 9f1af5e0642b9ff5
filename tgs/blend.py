"""A blend of finished runs: their OOF probabilities averaged on the same images, the
post-processing searched on that average, and the test set predicted by every run's fold
ensemble, averaged the same way -> one submission.

    BLEND/blend.json       members (run, weight, TTA, models), data folder, gate
    BLEND/thresholds.json  the post-processing searched on the blended OOF (as a run's)
    BLEND/search.npz, BLEND/cv.png

Members must be finished runs (thresholds.json) whose OOF covers the same images: runs made on
the same folds file, whatever their models, sizes or configs. Each member predicts the test set
with the TTA its OOF was made with, so test and OOF probabilities are averaged alike."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from tgs.errors import TGSError
from tgs.fileio import write_json
from tgs.run import Run

log = logging.getLogger(__name__)

BLEND_FILE = "blend.json"


def check_weights(runs: list[Run], weights: list[float] | None) -> list[float]:
    """`weights` (default: equal), one positive number per run."""
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):
        raise TGSError(f"{len(weights)} weights for {len(runs)} runs: give one weight per run")
    if any(not np.isfinite(w) or w <= 0 for w in weights):
        raise TGSError(f"weights must be positive numbers, got {weights}")
    return weights


def blend_oof(
    runs: list[Run], weights: list[float], folds: list[int] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The members' merged OOF (of `folds`, default every trained fold), averaged with
    `weights` on the first member's id order -> (ids, float32 probabilities (N, 101, 101),
    salt-present probabilities (N,) or None unless every member has a head)."""
    from tgs.predict import weighted_mean

    loaded = [r.load_oof(folds) for r in runs]
    ids = loaded[0][0]
    outs = []
    for run, (other, probs, cls, _) in zip(runs, loaded, strict=True):
        if set(other) != set(ids):
            raise TGSError(
                f"{run.root}'s OOF covers {len(other)} images, {len(set(other) - set(ids))} of "
                f"them not in {runs[0].root}'s {len(ids)}: blend runs made on the same folds "
                "file (and the same folds of it)"
            )
        where = {i: k for k, i in enumerate(other)}
        order = np.array([where[i] for i in ids])
        outs.append((probs[order], None if cls is None else cls[order]))
    probs, cls = weighted_mean(outs, weights)
    return ids, probs.astype(np.float32), cls


def search_blend(
    runs: list[Run | str | os.PathLike],
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    weights: list[float] | None = None,
    gate: str | None = None,
) -> dict:
    """Search the blend's post-processing on its averaged OOF; write BLEND/blend.json,
    thresholds.json, search.npz and cv.png. `gate` defaults to the first member's recorded
    gate; min-areas and the blank rule come from its config. Returns the thresholds."""
    from tgs.pipeline import load_data
    from tgs.plots import plot_threshold_search
    from tgs.thresholds import (
        DEFAULT_THRESHOLDS,
        check_gate,
        gate_score,
        is_blank,
        recorded_gate,
        search,
    )

    runs = [r if isinstance(r, Run) else Run(r).require() for r in runs]
    if len(runs) < 2:
        raise TGSError("a blend needs two runs or more")
    weights = check_weights(runs, weights)
    member_th = [r.thresholds() for r in runs]
    for r, th in zip(runs, member_th, strict=True):
        now = [r.relative(f) for f in r.prediction_files()]
        if th.get("models") and th["models"] != now:
            raise TGSError(
                f"{r.thresholds_path} was searched on OOF of {th['models']}, but {r.root} now "
                f"predicts with {now}: run `python -m tgs threshold --run {r.root}` first"
            )
    cfg = runs[0].config()
    gate = check_gate(gate or recorded_gate(member_th[0]))
    data_dir = runs[0].data_dir(data_dir)
    ids, probs, cls = blend_oof(runs, weights)
    data = load_data(data_dir)
    rows = data.rows(ids, data_dir)
    masks = data.masks[rows]
    blank = is_blank(data.images[rows]) if cfg.blank_rule else None
    score = gate_score(probs, cls, gate)
    result = search(probs, masks, DEFAULT_THRESHOLDS, np.asarray(cfg.min_areas), score, blank=blank)
    members = [
        {
            "run": str(r.root),
            "weight": w,
            "tta": th.get("tta") or r.config().tta,
            "models": [r.relative(f) for f in r.prediction_files()],
            "cv": th["cv"],
        }
        for r, w, th in zip(runs, weights, member_th, strict=True)
    ]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / BLEND_FILE, {"members": members, "data": str(data_dir), "gate": gate})
    th = {
        "threshold": result.threshold,
        "min_area": result.min_area,
        "empty_threshold": result.empty_threshold,
        "gate": gate if score is not None else None,
        "blank_rule": cfg.blank_rule,
        "cv": result.score,
        "cv_at_0.5": result.score_at(0.5, 0, 0.0),
        "n_images": len(ids),
        "members_cv": [m["cv"] for m in members],
    }
    write_json(out / "thresholds.json", th)
    np.savez_compressed(out / "search.npz", grid=result.grid.astype(np.float32), ids=np.array(ids))
    names = " + ".join(r.root.name for r in runs)
    plot_threshold_search(out / "cv.png", result, f"blend {names}: CV {result.score:.4f}")
    return th


def read_blend(out: str | os.PathLike) -> tuple[dict, dict]:
    """(blend.json, thresholds.json) of a blend folder (TGSError if it has none)."""
    out = Path(out)
    if not (out / BLEND_FILE).is_file():
        raise TGSError(f"{out / BLEND_FILE} missing: make it with `python -m tgs blend RUN ...`")
    return json.loads((out / BLEND_FILE).read_text()), json.loads(
        (out / "thresholds.json").read_text()
    )


def predict_blend(
    out: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
    submissions_dir: str | os.PathLike = "submissions",
) -> Path:
    """The blend's submission (submissions/<blend>-cv<CV>.csv and a .json manifest): every
    member's fold ensemble with its own TTA, averaged with the blend's weights, post-processed
    with the blend's thresholds."""
    from tgs import rle
    from tgs.data.io import test_ids
    from tgs.meta import git_commit
    from tgs.predict import RunEnsemble, ensemble_batches
    from tgs.submission import write_submission

    out = Path(out)
    blend, th = read_blend(out)
    data_dir = Path(data_dir or blend["data"])
    ids = test_ids(data_dir)
    members = []
    for m in blend["members"]:
        run = Run(m["run"]).require()
        now = [run.relative(f) for f in run.prediction_files()]
        if now != m["models"]:
            raise TGSError(
                f"{run.root} now predicts with {now}, but the blend was searched on OOF of "
                f"{m['models']}: make the blend again"
            )
        members.append(RunEnsemble.load(run, data_dir, ids, m["tta"]))
    weights = [m["weight"] for m in blend["members"]]
    t0, rles, stats = time.time(), [], {}
    for batch in ensemble_batches(members, weights, th, data_dir, ids, batch_size, stats):
        rles.extend(rle.encode_batch(batch.masks))
    path = Path(submissions_dir) / f"{out.name}-cv{th['cv']:.4f}.csv"
    write_submission(path, ids, rles=rles, sample_ids=ids)
    manifest = {
        "submission": path.name,
        "blend": str(out),
        "data": str(data_dir),
        "cv": th["cv"],
        "thresholds": th,
        "members": blend["members"],
        "n_images": len(ids),
        "empty_predicted": float(np.mean([r == "" for r in rles])),
        "commit": git_commit(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.time() - t0, 2),
        "model_seconds": round(stats["model_seconds"], 2),
    }
    write_json(path.with_suffix(".json"), manifest)
    return path
