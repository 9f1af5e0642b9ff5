"""Coverage-stratified k folds: id, fold, coverage, coverage_class, z."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold  # a 1.7 s import: only when needed

from tgs.core import commands
from tgs.core.errors import DataError
from tgs.core.fileio import atomic_path
from tgs.data.cache import load_train_cached
from tgs.data.io import id_mismatch

COLUMNS = ("id", "fold", "coverage", "coverage_class", "z")


def coverage(masks: np.ndarray) -> np.ndarray:
    """Binary masks (N, H, W) -> salt fraction per image, float (N,)."""
    return np.asarray(masks, dtype=bool).mean(axis=(1, 2))


def coverage_class(cov: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] -> class ceil(10 * coverage) in 0..10 (0 = empty)."""
    return np.ceil(np.round(np.asarray(cov) * 10, 9)).astype(int)


def make_folds(
    ids: Sequence[str],
    masks: np.ndarray,
    z: np.ndarray,
    n_folds: int = 5,
    seed: int = 42,
) -> pd.DataFrame:
    """Assign each id a fold with sklearn's StratifiedKFold over coverage classes."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if len(ids) < n_folds:
        raise DataError(f"{len(ids)} images cannot be split into {n_folds} folds")

    cov = coverage(masks)
    cls = coverage_class(cov)
    fold = np.full(len(ids), -1, dtype=int)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare classes (< n_folds members) are spread as they can be
        warnings.filterwarnings("ignore", message="The least populated class")
        for k, (_, val) in enumerate(skf.split(np.zeros(len(ids)), cls)):
            fold[val] = k
    return pd.DataFrame(
        {"id": list(ids), "fold": fold, "coverage": cov, "coverage_class": cls, "z": z}
    )


def save_folds(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the folds CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def write_folds(
    data_dir: str | os.PathLike, path: str | os.PathLike, n_folds: int = 5, seed: int = 42
) -> pd.DataFrame:
    """`tgs folds`: the folds of a data folder's train set (read through its cache, which
    reports ids without a depth), written to `path`; returns them."""
    data = load_train_cached(data_dir)
    df = make_folds(data.ids, data.masks, data.z, n_folds, seed)
    save_folds(df, path)
    return df


def load_folds(path: str | os.PathLike, ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a folds CSV; with `ids`, check it covers exactly those ids (else DataError)."""
    path = Path(path)
    remake = commands.make_folds(out=path)
    if not path.is_file():
        raise DataError(f"missing folds file: {path} (make it with `{remake}`)")
    df = pd.read_csv(path, dtype={"id": str})
    missing_cols = [c for c in ("id", "fold") if c not in df]
    if missing_cols:
        raise DataError(f"{path}: missing columns {', '.join(missing_cols)}")
    if df["id"].duplicated().any():
        raise DataError(f"{path}: id {df['id'][df['id'].duplicated()].iloc[0]!r} appears twice")
    mismatch = id_mismatch(df["id"], ids) if ids is not None else None
    if mismatch:
        raise DataError(f"{path} does not match the data ({mismatch}): remake it with `{remake}`")
    return df


def folds_mismatch(path: str | os.PathLike, ids: Sequence[str]) -> str | None:
    """Why the folds CSV at `path` does not fit the labelled `ids` (unreadable, another id set),
    or None when it fits."""
    try:
        load_folds(path, ids)
    except (DataError, OSError, ValueError, pd.errors.ParserError) as e:
        return str(e).splitlines()[0]
    return None
