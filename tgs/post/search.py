"""The joint threshold x min-area (x empty gate) search on OOF with the competition metric.

It visits every (threshold, min_area) pair in one pass over the pixels: per image, a histogram of
probability bins over all pixels and over true pixels gives predicted area and intersection at
every threshold by cumulative sums. The rule it searches is `tgs.post.rule`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tgs.core.config import MIN_AREAS
from tgs.post.metric import score_from_counts
from tgs.post.rule import empty_rule

DEFAULT_THRESHOLDS = np.arange(100) / 100  # 0.00 .. 0.99


DEFAULT_MIN_AREAS = np.asarray(MIN_AREAS)  # 0 .. 380 pixels


# 0.00 (no gate) .. 0.95, then finer to 0.99: a mask_max gate sits high (0.60-0.95 on real data)
DEFAULT_EMPTY_THRESHOLDS = np.concatenate([np.arange(0, 19) / 20, np.arange(95, 100) / 100])


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
    """Best post-processing and the full grid of CV scores (thresholds x min_areas x gates)."""

    threshold: float
    min_area: int
    empty_threshold: float
    score: float
    thresholds: np.ndarray
    min_areas: np.ndarray
    empty_thresholds: np.ndarray
    grid: np.ndarray  # (T, A, E) mean competition score
    per_image: np.ndarray = field(repr=False)  # (N,) scores at the optimum

    def score_at(self, threshold: float, min_area: int = 0, empty_threshold: float = 0.0) -> float:
        i = int(np.argmin(np.abs(self.thresholds - threshold)))
        j = int(np.argmin(np.abs(self.min_areas - min_area)))
        k = int(np.argmin(np.abs(self.empty_thresholds - empty_threshold)))
        return float(self.grid[i, j, k])


def _scores(pred_area, inter, true_area, emptied) -> np.ndarray:
    """Per-image scores (N, T) when `emptied` (N, T) predictions are replaced by empty masks."""
    i_ = np.where(emptied, 0, inter)
    u_ = np.where(emptied, true_area[:, None], pred_area + true_area[:, None] - inter)
    return score_from_counts(i_, u_)


def search_grid(
    probs: np.ndarray,
    masks: np.ndarray,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
    min_areas: np.ndarray = DEFAULT_MIN_AREAS,
    *,
    gate_scores: np.ndarray | None = None,
    empty_thresholds: np.ndarray = DEFAULT_EMPTY_THRESHOLDS,
    blank: np.ndarray | None = None,
) -> SearchResult:
    """Jointly search threshold x min_area (x empty gate when per-image `gate_scores` (N,) are
    given, see `gate_score`) maximising the competition score on (N, H, W) probability maps;
    `blank` (N,) images are always emptied."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    min_areas = np.asarray(min_areas, dtype=np.int64)
    gates = np.asarray(empty_thresholds if gate_scores is not None else [0.0], dtype=np.float64)
    pred_area, inter, true_area = threshold_counts(probs, masks, thresholds)
    grid = np.empty((len(thresholds), len(min_areas), len(gates)))
    for j, a in enumerate(min_areas):
        for k, g in enumerate(gates):
            emptied = empty_rule(pred_area, a, gate_scores, g, blank)
            grid[:, j, k] = _scores(pred_area, inter, true_area, emptied).mean(axis=0)
    ti, ai, gi = np.unravel_index(int(np.argmax(grid)), grid.shape)
    emptied = empty_rule(pred_area[:, ti : ti + 1], min_areas[ai], gate_scores, gates[gi], blank)
    per_image = _scores(pred_area[:, ti : ti + 1], inter[:, ti : ti + 1], true_area, emptied)[:, 0]
    return SearchResult(
        threshold=float(thresholds[ti]),
        min_area=int(min_areas[ai]),
        empty_threshold=float(gates[gi]),
        score=float(grid[ti, ai, gi]),
        thresholds=thresholds,
        min_areas=min_areas,
        empty_thresholds=gates,
        grid=grid,
        per_image=per_image,
    )
