"""The post-processing search on a run's (or a blend's) OOF probabilities against the labelled
set's truth masks, and the search grid's file (search.npz) for the report."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tgs.core.config import Config
from tgs.core.fileio import atomic_path
from tgs.data.io import TrainData
from tgs.post.rule import PostProcessing
from tgs.post.search import DEFAULT_THRESHOLDS, SearchResult, search_grid
from tgs.run.records import Thresholds


def search_oof(
    ids: list[str],
    probs: np.ndarray,
    cls: np.ndarray | None,
    data: TrainData,
    data_dir: str | os.PathLike,
    *,
    cfg: Config,
    gate: str,
) -> tuple[SearchResult, Thresholds]:
    """Threshold x min-area (x gate) search on OOF probabilities (N, 101, 101) of `ids`, with
    salt-present probabilities `cls` (N,) or None, the config's min-areas and blank rule ->
    (SearchResult, the thresholds record of what it decides: no folds, TTA or models yet)."""
    rows = data.rows(ids, data_dir)
    masks = data.masks[rows]
    rule = PostProcessing(gate=gate, blank_rule=cfg.blank_rule)
    score = rule.gate_score(probs, cls)
    result = search_grid(
        probs,
        masks,
        DEFAULT_THRESHOLDS,
        np.asarray(cfg.min_areas),
        gate_scores=score,
        blank=rule.blank(data.images[rows]),
    )
    return result, Thresholds(
        threshold=result.threshold,
        min_area=result.min_area,
        empty_threshold=result.empty_threshold,
        gate=gate if score is not None else None,
        blank_rule=cfg.blank_rule,
        cv=result.score,
        cv_at_half=result.score_at(0.5, 0, 0.0),
        all_empty=float(np.mean(masks.reshape(len(masks), -1).max(axis=1) == 0)),
        n_images=len(ids),
    )


def save_search(path: Path, result: SearchResult, ids: list[str]) -> None:
    """The whole search grid and per-image scores (RUN/search.npz), for the report; written
    atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(
            f,
            grid=result.grid.astype(np.float32),
            thresholds=result.thresholds,
            min_areas=result.min_areas,
            empty_thresholds=result.empty_thresholds,
            ids=np.array(ids),
            per_image=result.per_image.astype(np.float32),
        )
