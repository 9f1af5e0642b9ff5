import numpy as np
import pandas as pd
import pytest

from tgs.core.errors import DataError
from tgs.data.folds import coverage_class, load_folds, make_folds, save_folds


def toy(n=300, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, 101, 101), np.uint8)
    cov_target = np.where(rng.uniform(size=n) < 0.4, 0, rng.uniform(size=n))
    for i, c in enumerate(cov_target):
        masks[i, : int(round(c * 101)), :] = 1
    ids = [f"{i:010x}" for i in range(n)]
    return ids, masks, rng.integers(50, 950, n).astype(float)


def test_coverage_class_edges():
    np.testing.assert_array_equal(
        coverage_class(np.array([0, 0.0001, 0.1, 0.1001, 0.95, 1.0])), [0, 1, 1, 2, 10, 10]
    )


def test_folds_disjoint_complete_stratified_deterministic(tmp_path):
    ids, masks, z = toy()
    df = make_folds(ids, masks, z, n_folds=5, seed=42)
    assert list(df.columns) == ["id", "fold", "coverage", "coverage_class", "z"]
    assert sorted(df["id"]) == sorted(ids) and df["id"].is_unique  # each id exactly once
    assert set(df["fold"]) == set(range(5))
    sizes = df["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    for _, group in df.groupby("coverage_class"):  # each class spread evenly over folds
        counts = group["fold"].value_counts().reindex(range(5), fill_value=0)
        assert counts.max() - counts.min() <= 1
    again = make_folds(ids, masks, z, n_folds=5, seed=42)
    pd.testing.assert_frame_equal(df, again)
    other = make_folds(ids, masks, z, n_folds=5, seed=7)
    assert not (other["fold"] == df["fold"]).all()
    save_folds(df, tmp_path / "f.csv")
    back = load_folds(tmp_path / "f.csv", ids=ids)
    assert back["fold"].tolist() == df["fold"].tolist()


def test_folds_file_must_match_data(tmp_path):
    ids, masks, z = toy(50)
    save_folds(make_folds(ids, masks, z, 5), tmp_path / "f.csv")
    with pytest.raises(DataError, match="does not match"):
        load_folds(tmp_path / "f.csv", ids=ids[:-1] + ["ffffffffff"])
    with pytest.raises(DataError, match="missing folds file"):
        load_folds(tmp_path / "nope.csv")
