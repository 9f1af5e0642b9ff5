#!/usr/bin/env python
"""Where a run loses score on a scored holdout (`tgs holdout`: DATA/truth.csv for its test set).

    python scripts/analyse_holdout.py RUN [RUN ...] --data data/realho

Predicts the holdout with each run's ensemble (its models, TTA and searched post-processing, as
its submission) and prints: the holdout score, the share of it lost on salt images predicted
empty, on empty images predicted with salt and on the IoU of the salt images found; how well the
salt-present head and the mask's maximum probability rank salt images (ROC AUC); and the
holdout's own best post-processing against the one searched on the run's OOF; and how well the
run's first trained fold fits its own training images against its validation fold (raw score at
p > 0.5, no TTA, on up to 600 of each): a small gap with a low training score means underfit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def holdout_arrays(run_dir: str, data: Path) -> dict:
    """The run's holdout probabilities (N, 101, 101), salt-present probabilities (N,) or None,
    post-processed masks, images and true masks, in the order of the holdout's ids."""
    from tgs.data import rle
    from tgs.data.io import read_rle_csv
    from tgs.predict.test_set import predict_batches
    from tgs.run.folder import Run

    run = Run(run_dir)
    th = run.thresholds()
    parts = list(predict_batches(run, data, 256, th.tta or run.config().tta, {}))
    ids = [i for b in parts for i in b.ids]
    truth = read_rle_csv(data / "truth.csv").set_index("id")
    cls = None if parts[0].cls is None else np.concatenate([b.cls for b in parts])
    return {
        "th": th,
        "probs": np.concatenate([b.probs for b in parts]),
        "cls": cls,
        "masks": np.concatenate([b.masks for b in parts]).astype(bool),
        "images": np.concatenate([b.images for b in parts]),
        "truth": rle.decode_batch(truth.loc[ids, "rle_mask"]).astype(bool),
    }


def analyse(a: dict) -> list[tuple[str, str]]:
    """Rows (what, value) for one run's holdout arrays (`th`: its Thresholds, or their dict)."""
    from sklearn.metrics import roc_auc_score

    from tgs.post.metric import per_image_scores
    from tgs.post.rule import PostProcessing, gate_score
    from tgs.post.search import search_grid
    from tgs.run.records import Thresholds

    scores = per_image_scores(a["masks"], a["truth"])
    salt, said_empty = a["truth"].any((1, 2)), ~a["masks"].any((1, 2))
    th = a["th"] if isinstance(a["th"], Thresholds) else Thresholds.from_dict(a["th"])
    n, rule = len(scores), PostProcessing.from_thresholds(th)
    rows = [("holdout score", f"{scores.mean():.4f} ({n} images, {salt.sum()} with salt)")]
    for what, sel in (
        ("salt images predicted empty", salt & said_empty),
        ("IoU missed on the salt images found", salt & ~said_empty),
        ("empty images predicted with salt", ~salt & ~said_empty),
    ):
        rows.append((f"lost: {what}", f"{(1 - scores[sel]).sum() / n:.4f} ({sel.sum()} images)"))
    small = salt & (a["truth"].mean((1, 2)) < 0.1)
    small_text = f"{scores[small].mean():.3f} ({small.sum()} images)" if small.any() else "none"
    rows.append(("score of salt under 10% of the image", small_text))
    rows.append(("AUC, mask max probability", f"{roc_auc_score(salt, a['probs'].max((1, 2))):.4f}"))
    if a["cls"] is not None:
        rows.append(("AUC, salt-present head", f"{roc_auc_score(salt, a['cls']):.4f}"))
        mean = gate_score(a["probs"], a["cls"], "mean")
        rows.append(("AUC, mean of head and mask max", f"{roc_auc_score(salt, mean):.4f}"))
    gated = rule.gate_score(a["probs"], a["cls"])
    best = search_grid(a["probs"], a["truth"], gate_scores=gated, blank=rule.blank(a["images"]))
    searched = f"t {rule.threshold:.2f}, min-area {rule.min_area}"
    searched += f", gate ({rule.gate}) {rule.empty_threshold:.2f}"
    rows.append(("post-processing searched on OOF", f"{searched} -> {scores.mean():.4f}"))
    oracle = f"t {best.threshold:.2f}, min-area {best.min_area}, gate {best.empty_threshold:.2f}"
    rows.append(("the holdout's own best", f"{oracle} -> {best.score:.4f}"))
    return rows


def fit_gap(run_dir: str, n: int = 600) -> tuple[str, str]:
    """Row: raw score (p > 0.5, no TTA) of the run's first trained fold's best model on up to
    `n` of its training images (a fixed sample) and on its validation fold."""
    import pandas as pd

    from tgs.data.inputs import InputSpec
    from tgs.pipeline.stages import load_data
    from tgs.post.metric import competition_score
    from tgs.predict.inference import Runtime, load_models, predict_array
    from tgs.run.folder import Run

    run = Run(run_dir)
    cfg, k = run.config(), run.trained_folds()[0]
    rt, spec = Runtime.from_config(cfg), InputSpec.from_config(cfg)
    data_dir = run.data_dir()
    folds, data = pd.read_csv(run.paths.folds), load_data(data_dir)
    model = load_models([run.fold(k).best], rt)
    scores = []
    for sel in (folds.fold != k, folds.fold == k):
        ids = folds.id[sel].sample(min(n, int(sel.sum())), random_state=0)
        part = data.subset(data.rows(list(ids), data_dir))
        probs, _ = predict_array(model, part.images, rt, tta="none", z=part.z, spec=spec)
        scores.append(f"{competition_score(probs > 0.5, part.masks):.4f} ({len(ids)})")
    return (f"fit of fold {k}, raw: train / validation", " / ".join(scores))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders with thresholds.json")
    p.add_argument("--data", required=True, help="a `tgs holdout` folder (with truth.csv)")
    a = p.parse_args(argv)
    data = Path(a.data)
    if not (data / "truth.csv").is_file():
        p.error(f"{data / 'truth.csv'} not found: make the folder with `python -m tgs holdout`")
    for run in a.runs:
        print(f"== {run}")
        for what, value in [*analyse(holdout_arrays(run, data)), fit_gap(run)]:
            print(f"{what:<42} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
