"""Run-level stages on a finished run folder: merge OOF and search post-processing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tgs.config import Config, config_from_dict
from tgs.data.io import load_train
from tgs.errors import TGSError
from tgs.fileio import write_json
from tgs.plots import plot_threshold_search
from tgs.thresholds import DEFAULT_THRESHOLDS, is_blank, search


def read_run_config(run_dir: Path) -> Config:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise TGSError(f"{run_dir} is not a run folder (no config.yaml); train a fold first")
    return config_from_dict(yaml.safe_load(path.read_text()))


def read_meta(run_dir: Path) -> dict:
    path = run_dir / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def fold_dirs(run_dir: Path) -> list[Path]:
    """RUN/fold{k} folders holding a best.pt, in fold order."""
    dirs = sorted(run_dir.glob("fold*/best.pt"), key=lambda p: int(p.parent.name[4:]))
    return [p.parent for p in dirs]


def load_oof(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray | None, list[int]]:
    """Merge RUN/fold*/oof.npz -> (ids, float16 probabilities (N, 101, 101), salt-present
    probabilities (N,) or None, folds used)."""
    ids, probs, cls, folds = [], [], [], []
    for d in fold_dirs(run_dir):
        path = d / "oof.npz"
        if not path.is_file():
            raise TGSError(f"{path} missing: fold {d.name} did not finish (rerun or --resume it)")
        with np.load(path) as z:
            ids.extend(z["ids"].tolist())
            probs.append(z["probs"])
            cls.append(z["cls"] if "cls" in z else None)
        folds.append(int(d.name[4:]))
    if not ids:
        raise TGSError(f"no fold in {run_dir} has finished training")
    if len(set(ids)) != len(ids):
        raise TGSError(f"{run_dir}: an id appears in two folds' OOF; were the folds changed?")
    merged_cls = None if any(c is None for c in cls) else np.concatenate(cls)
    return ids, np.concatenate(probs), merged_cls, folds


def threshold_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Search threshold x min-area on the run's merged OOF; write thresholds.json and cv.png."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    data_dir = Path(data_dir or read_meta(run_dir).get("data", ""))
    ids, probs, cls, folds = load_oof(run_dir)
    data = load_train(data_dir, check_rle=False)
    index = {id_: i for i, id_ in enumerate(data.ids)}
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise TGSError(f"OOF id {unknown[0]!r} is not in {data_dir}/train.csv: wrong --data?")
    rows = [index[i] for i in ids]
    masks = data.masks[rows]
    blank = is_blank(data.images[rows]) if cfg.blank_rule else None
    result = search(
        probs, masks, DEFAULT_THRESHOLDS, np.asarray(cfg.min_areas), cls=cls, blank=blank
    )
    complete = len(ids) == len(data.ids)
    out = {
        "threshold": result.threshold,
        "min_area": result.min_area,
        "empty_threshold": result.empty_threshold,
        "blank_rule": cfg.blank_rule,
        "cv": result.score,
        "cv_at_0.5": result.score_at(0.5, 0, 0.0),
        "all_empty": float(np.mean(masks.reshape(len(masks), -1).max(axis=1) == 0)),
        "n_images": len(ids),
        "folds": folds,
        "complete": complete,
    }
    write_json(run_dir / "thresholds.json", out)
    title = f"{cfg.name}: CV {result.score:.4f} on {len(ids)} OOF images, folds {folds}"
    plot_threshold_search(run_dir / "cv.png", result, title)
    return out
