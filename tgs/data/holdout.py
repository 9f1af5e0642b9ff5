"""Carve a scored local holdout out of a labelled data folder."""

from __future__ import annotations

import os

import numpy as np

from tgs.core.fileio import atomic_dir
from tgs.data.cache import load_train_cached
from tgs.data.folds import make_folds
from tgs.data.layout import write_layout


def make_holdout(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    frac: float = 0.2,
    seed: int = 0,
    force: bool = False,
) -> tuple[int, int]:
    """Write `out`: train = (1 - frac) of the labelled set, test = the rest, with truth.csv.

    The split is stratified by coverage class like the folds. Returns (n_train, n_test).
    """
    if not 0 < frac < 0.5:
        raise ValueError(f"frac must be in (0, 0.5), got {frac}")
    data = load_train_cached(data_dir)
    folds = make_folds(data.ids, data.masks, data.z, n_folds=round(1 / frac), seed=seed)
    held = folds["fold"].to_numpy() == 0
    train, test = data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))
    with atomic_dir(out, overwrite=force) as tmp:
        write_layout(tmp, train, test.ids, test.images, test.z, test_masks=test.masks)
    return len(train.ids), len(test.ids)
