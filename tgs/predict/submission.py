"""Write, validate and score submission CSVs (id,rle_mask)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tgs.core.errors import DataError, RLEError, SubmissionError
from tgs.core.fileio import atomic_path
from tgs.data import rle
from tgs.data.io import id_mismatch, read_rle_csv
from tgs.post.metric import per_image_scores


def check_frame(sub: pd.DataFrame, sample_ids: Sequence[str], name: str = "submission") -> None:
    """Raise SubmissionError unless `sub` has exactly the sample ids, once each, legal RLEs."""
    dup = sub["id"][sub["id"].duplicated()]
    if len(dup):
        raise SubmissionError(f"{name}: duplicate id {dup.iloc[0]!r} ({len(dup)} duplicates)")
    mismatch = id_mismatch(sub["id"], sample_ids)
    if mismatch:
        raise SubmissionError(f"{name}: ids differ from sample_submission ({mismatch})")
    for id_, text in zip(sub["id"], sub["rle_mask"], strict=True):
        try:
            rle.parse(text)
        except RLEError as e:
            raise SubmissionError(f"{name}: id {id_!r}: illegal RLE: {e}") from None


def validate_file(path: str | os.PathLike, sample: str | os.PathLike) -> int:
    """Validate a submission CSV against sample_submission.csv; returns its row count."""
    try:
        sub = read_rle_csv(path)
        sample_ids = read_rle_csv(sample)["id"].tolist()
    except DataError as e:
        raise SubmissionError(str(e)) from None
    check_frame(sub, sample_ids, name=str(path))
    return len(sub)


def write_submission(
    path: str | os.PathLike,
    ids: Sequence[str],
    masks: np.ndarray | None = None,
    rles: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
) -> Path:
    """Validate and atomically write id,rle_mask (in `sample_ids` order when given).

    Give either binary `masks` (N, 101, 101) or ready `rles`.
    """
    if (masks is None) == (rles is None):
        raise ValueError("give exactly one of masks or rles")
    rles = rle.encode_batch(masks) if masks is not None else list(rles)
    sub = pd.DataFrame({"id": list(ids), "rle_mask": rles})
    if sample_ids is not None:
        check_frame(sub, sample_ids, name=str(path))
        sub = sub.set_index("id").loc[list(sample_ids)].reset_index()
    with atomic_path(path) as tmp:
        sub.to_csv(tmp, index=False)
    return Path(path)


def score_file(path: str | os.PathLike, truth: str | os.PathLike) -> tuple[float, int]:
    """Competition score of a submission against a truth CSV (train.csv format).

    Returns (score, number of images). Every truth id must be in the submission.
    """
    sub = read_rle_csv(path)
    true = read_rle_csv(truth)
    check_frame(sub, true["id"].tolist(), name=str(path))
    sub = sub.set_index("id").loc[true["id"]]
    try:
        pred = rle.decode_batch(sub["rle_mask"].tolist())
        gt = rle.decode_batch(true["rle_mask"].tolist())
    except RLEError as e:
        raise SubmissionError(f"{truth}: {e}") from None
    return float(per_image_scores(pred, gt).mean()), len(true)
