"""Test helpers: the checkout's root, the tiny training settings, packing a data folder like
Kaggle's download, a seeded FoldTrainer."""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def pack_competition_zip(data_dir: Path, out_dir: Path, name: str = "competition.zip") -> Path:
    """Zip `data_dir` as Kaggle ships it: train.zip (images/, masks/), test.zip, the CSVs."""
    inner = {"train.zip": data_dir / "train", "test.zip": data_dir / "test"}
    for zname, folder in inner.items():
        with zipfile.ZipFile(out_dir / zname, "w") as zf:
            for f in sorted(folder.rglob("*.png")):
                zf.write(f, f.relative_to(folder).as_posix())
    path = out_dir / name
    with zipfile.ZipFile(path, "w") as zf:
        for zname in inner:
            zf.write(out_dir / zname, zname)
        for csv in ("train.csv", "depths.csv", "sample_submission.csv"):
            zf.write(data_dir / csv, csv)
    return path


def train_args(config, data, folds, fold, run, *extra: str) -> list[str]:
    """Arguments of `python -m tgs train` for one fold."""
    return [
        "train",
        "--config",
        str(config),
        "--data",
        str(data),
        "--folds",
        str(folds),
        "--fold",
        str(fold),
        "--run",
        str(run),
        *extra,
    ]


# The tiny net every training test uses (a fold trains in about a second), defined once: as
# `KEY=VALUE` overrides of the defaults (TINY_ARGS, one thread) and as a config file (TINY).
TINY_SETTINGS = {
    "model": "seed_unet",
    "model_kwargs": {"n_filters": 4},
    "geometry": "resize",
    "size": 32,
    "batch_size": 16,
    "epochs": 1,
}
TINY_ARGS = [
    *(f"{k}={v}" for k, v in TINY_SETTINGS.items() if k != "model_kwargs"),
    *(f"model_kwargs.{k}={v}" for k, v in TINY_SETTINGS["model_kwargs"].items()),
    "threads=1",
]
TINY = yaml.safe_dump(
    {"name": "tiny", **TINY_SETTINGS, "n_folds": 2, "val_batch_size": 32, "loss": "bce+dice"},
    sort_keys=False,
    default_flow_style=None,
)


def fold_trainer(cfg, data, folds, run_dir: Path, fold: int = 0):
    """A FoldTrainer on a fresh run folder, built as training builds one
    (`tgs.pipeline.stages.fold_trainer`: the fold's callbacks, the RNGs seeded)."""
    from tgs.pipeline.stages import fold_trainer as production_trainer
    from tgs.run.folder import Run

    return production_trainer(Run(run_dir).create(cfg), cfg, data, folds, fold)


def tiny_yaml(**changes) -> str:
    """TINY with `changes` (config keys) applied, as a config file's text."""
    return yaml.safe_dump({**yaml.safe_load(TINY), **changes}, sort_keys=False)
