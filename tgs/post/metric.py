"""The competition metric: mean over images of mean precision over IoU thresholds 0.50..0.95.

Per image: IoU of predicted and true masks; at each t in 0.50, 0.55, ..., 0.95 a hit (1) when
IoU > t strictly, else 0; both masks empty scores 1, exactly one empty scores 0. This module is
the only implementation; validation, threshold search and `tgs score` all call it.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.arange(10, 20) / 20  # 0.50, 0.55, ..., 0.95 (for display)
_T20 = np.arange(10, 20)  # thresholds times 20, so IoU > t is tested in exact integers


def score_from_counts(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per-image scores from pixel counts.

    intersection, union: integer arrays of any (matching) shape, counts per image.
    Returns float64 scores of the same shape; union == 0 (both empty) scores 1.
    IoU > k/20 is k*U < 20*I, i.e. k <= (20*I - 1) // U in exact integers, so the number of hits
    among k = 10..19 is clip((20*I - 1) // U - 9, 0, 10): no rounding at the thresholds and no
    loop or broadcast over thresholds.
    """
    intersection = np.asarray(intersection, dtype=np.int64)
    union = np.asarray(union, dtype=np.int64)
    safe = np.maximum(union, 1)
    hits = np.clip((20 * intersection - 1) // safe - (_T20[0] - 1), 0, len(_T20))
    return np.where(union == 0, 1.0, hits / len(_T20))


def counts(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary masks (N, H, W) -> (intersection, union) pixel counts per image, shape (N,)."""
    pred = np.asarray(pred).astype(bool, copy=False)
    true = np.asarray(true).astype(bool, copy=False)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {true.shape}")
    axes = tuple(range(1, pred.ndim))
    inter = np.logical_and(pred, true).sum(axis=axes)
    union = np.logical_or(pred, true).sum(axis=axes)
    return inter, union


def per_image_scores(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Binary masks (N, H, W) -> competition score of each image, shape (N,)."""
    return score_from_counts(*counts(pred, true))


def competition_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Binary masks (N, H, W) -> the competition score (mean of per-image scores)."""
    return float(per_image_scores(pred, true).mean())
