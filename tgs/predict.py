"""Fold ensemble x hflip TTA on the test set -> post-processing -> validated submission."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tgs import rle
from tgs.checkpoint import load_model
from tgs.data.dataset import InputSpec
from tgs.data.io import iter_test_images, read_depths, require_depths, test_ids
from tgs.errors import TGSError
from tgs.evaluate import fold_dirs, read_meta, read_run_config
from tgs.fileio import write_json
from tgs.submission import write_submission
from tgs.thresholds import is_blank, postprocess
from tgs.train import Runtime, git_commit, predict_array
from tgs.trainer import model_files


def read_thresholds(run_dir: Path) -> dict:
    path = run_dir / "thresholds.json"
    if not path.is_file():
        raise TGSError(f"{path} missing: run `python -m tgs threshold --run {run_dir}` first")
    return json.loads(path.read_text())


def ensemble_proba(
    models: list,
    images: np.ndarray,
    rt: Runtime,
    batch_size: int,
    tta: str,
    z: np.ndarray | None = None,
    spec: InputSpec | None = None,
) -> np.ndarray:
    """uint8 images (B, 101, 101) -> (mean pixel probabilities (B, 101, 101), mean salt-present
    probabilities (B,) or None), averaged over models and TTA views."""
    total, total_cls = np.zeros(images.shape, np.float32), None
    for model in models:
        probs, cls = predict_array(model, images, rt, batch_size, tta, z, spec)
        total += probs
        if cls is not None:
            total_cls = cls if total_cls is None else total_cls + cls
    return total / len(models), None if total_cls is None else total_cls / len(models)


def test_depths(data_dir: Path, ids: list[str], spec: InputSpec) -> np.ndarray | None:
    """Depths z for the test ids when the models take a depth channel (DataError if missing)."""
    if not spec.depth:
        return None
    z = read_depths(data_dir / "depths.csv").reindex(ids).to_numpy(dtype=float)
    require_depths(ids, z, data_dir / "depths.csv")
    return z


def default_submission_path(run_dir: Path, cv: float, folder: str | os.PathLike) -> Path:
    return Path(folder) / f"{run_dir.name}-cv{cv:.4f}.csv"


def predict_run(
    run_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 256,
    tta: str = "hflip",
    submissions_dir: str | os.PathLike = "submissions",
) -> Path:
    """Write the run's submission (and a .json manifest beside it); returns the CSV path."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    data_dir = Path(data_dir or read_meta(run_dir).get("data", ""))
    th = read_thresholds(run_dir)
    dirs = fold_dirs(run_dir)
    rt = Runtime.from_config(cfg)
    files = [f for d in dirs for f in model_files(d)]
    models = []
    for f in files:
        model, _ = load_model(f)
        models.append(model.to(rt.device, memory_format=rt.memory_format).eval())
    ids = test_ids(data_dir)
    spec = InputSpec.from_config(cfg)
    z_all = test_depths(data_dir, ids, spec)
    t0, rles, done, model_seconds = time.time(), [], 0, 0.0
    bar = tqdm(total=len(ids), desc=f"predict {len(models)} models x {tta}", unit="img")
    with torch.inference_mode():
        for _, images in iter_test_images(data_dir, ids, batch_size):
            z = None if z_all is None else z_all[done : done + len(images)]
            t_model = time.time()
            probs, cls = ensemble_proba(models, images, rt, cfg.val_batch_size, tta, z, spec)
            model_seconds += time.time() - t_model
            done += len(images)
            blank = is_blank(images) if th.get("blank_rule") else None
            masks = postprocess(
                probs, th["threshold"], th["min_area"], cls, th.get("empty_threshold", 0.0), blank
            )
            rles.extend(rle.encode_batch(masks))
            bar.update(len(images))
    bar.close()
    path = Path(out) if out else default_submission_path(run_dir, th["cv"], submissions_dir)
    write_submission(path, ids, rles=rles, sample_ids=ids)
    write_json(
        path.with_suffix(".json"),
        {
            "submission": path.name,
            "run": str(run_dir),
            "data": str(data_dir),
            "cv": th["cv"],
            "thresholds": th,
            "folds": [int(d.name[4:]) for d in dirs],
            "models": [str(f.relative_to(run_dir)) for f in files],
            "tta": tta,
            "n_images": len(ids),
            "empty_predicted": float(np.mean([r == "" for r in rles])),
            "commit": git_commit(),
            "config": cfg.to_dict(),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": round(time.time() - t0, 2),
            "model_seconds": round(model_seconds, 2),
        },
    )
    return path
