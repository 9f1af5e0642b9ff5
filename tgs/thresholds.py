"""Post-processing of probability maps and its joint search on OOF with the competition metric.

Post-processing: pixel > threshold (compared in float16 -> float32, exactly as searched), then a
mask with fewer than `min_area` pixels becomes empty. The search visits every (threshold,
min_area) pair in one pass over the pixels: per image, a histogram of probability bins over all
pixels and over true pixels gives predicted area and intersection at every threshold by
cumulative sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tgs.metric import score_from_counts

DEFAULT_THRESHOLDS = np.arange(100) / 100  # 0.00 .. 0.99
DEFAULT_MIN_AREAS = np.arange(20) * 10  # 0 .. 190 pixels


def binarize(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Probabilities (any shape) -> bool, p > threshold after rounding p to float16."""
    return np.asarray(probs, dtype=np.float16).astype(np.float32) > np.float32(threshold)


def postprocess(probs: np.ndarray, threshold: float = 0.5, min_area: int = 0) -> np.ndarray:
    """Probabilities (N, H, W) -> uint8 masks (N, H, W); masks under `min_area` pixels emptied."""
    masks = binarize(probs, threshold)
    small = masks.sum(axis=(1, 2)) < min_area
    masks[small] = False
    return masks.astype(np.uint8)


def _bin_lut(thresholds: np.ndarray) -> np.ndarray:
    """For every float16 bit pattern: how many thresholds it exceeds (float32 comparison)."""
    values = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    lut = np.searchsorted(thresholds.astype(np.float32), values, side="left")
    lut[np.isnan(values)] = 0
    return lut.astype(np.int64)


def threshold_counts(
    probs: np.ndarray, masks: np.ndarray, thresholds: np.ndarray, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts at every threshold.

    probs: (N, H, W) probabilities; masks: (N, H, W) binary truth; thresholds ascending (T,).
    Returns (pred_area (N, T), intersection (N, T), true_area (N,)) for masks p > t.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if np.any(np.diff(thresholds) <= 0):
        raise ValueError("thresholds must be strictly increasing")
    n, t = len(probs), len(thresholds)
    lut = _bin_lut(thresholds)
    pred_area = np.empty((n, t), np.int64)
    inter = np.empty((n, t), np.int64)
    true_area = np.asarray(masks, dtype=bool).reshape(n, -1).sum(axis=1)
    for s in range(0, n, chunk):
        p16 = np.asarray(probs[s : s + chunk], dtype=np.float16).reshape(-1)
        m = np.asarray(masks[s : s + chunk], dtype=bool).reshape(-1)
        k = len(p16) // probs[0].size
        idx = lut[p16.view(np.uint16)] + np.repeat(np.arange(k) * (t + 1), probs[0].size)
        h_all = np.bincount(idx, minlength=k * (t + 1)).reshape(k, t + 1)
        h_true = np.bincount(idx[m], minlength=k * (t + 1)).reshape(k, t + 1)
        # p > t_j  <=>  bin > j: counts in bins j+1..T, a reversed cumulative sum
        pred_area[s : s + k] = np.cumsum(h_all[:, ::-1], axis=1)[:, ::-1][:, 1:]
        inter[s : s + k] = np.cumsum(h_true[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return pred_area, inter, true_area


@dataclass
class SearchResult:
    """Best post-processing and the full grid of CV scores (thresholds x min_areas)."""

    threshold: float
    min_area: int
    score: float
    thresholds: np.ndarray
    min_areas: np.ndarray
    grid: np.ndarray  # (T, A) mean competition score
    per_image: np.ndarray = field(repr=False)  # (N,) scores at the optimum

    def score_at(self, threshold: float, min_area: int = 0) -> float:
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        j = int(np.argmin(np.abs(self.min_areas - min_area)))
        return float(self.grid[i, j])


def search(
    probs: np.ndarray,
    masks: np.ndarray,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
    min_areas: np.ndarray = DEFAULT_MIN_AREAS,
) -> SearchResult:
    """Jointly search threshold x min_area maximising the competition score on (N, H, W) maps."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    min_areas = np.asarray(min_areas, dtype=np.int64)
    pred_area, inter, true_area = threshold_counts(probs, masks, thresholds)
    grid = np.empty((len(thresholds), len(min_areas)))
    for j, a in enumerate(min_areas):
        emptied = pred_area < a  # (N, T)
        i_ = np.where(emptied, 0, inter)
        u_ = np.where(emptied, true_area[:, None], pred_area + true_area[:, None] - inter)
        grid[:, j] = score_from_counts(i_, u_).mean(axis=0)
    ti, ai = np.unravel_index(int(np.argmax(grid)), grid.shape)
    emptied = pred_area[:, ti] < min_areas[ai]
    best_i = np.where(emptied, 0, inter[:, ti])
    best_u = np.where(emptied, true_area, pred_area[:, ti] + true_area - inter[:, ti])
    return SearchResult(
        threshold=float(thresholds[ti]),
        min_area=int(min_areas[ai]),
        score=float(grid[ti, ai]),
        thresholds=thresholds,
        min_areas=min_areas,
        grid=grid,
        per_image=score_from_counts(best_i, best_u),
    )
