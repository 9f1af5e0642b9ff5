import numpy as np
import pytest

from tgs.metric import competition_score
from tgs.thresholds import binarize, postprocess, search, threshold_counts


def constructed(n=40, seed=0):
    """Truth at p=0.6 beside p=0.4 distractors; empty-truth images with small p=0.9 specks."""
    rng = np.random.default_rng(seed)
    probs = np.zeros((n, 101, 101), np.float32)
    masks = np.zeros((n, 101, 101), np.uint8)
    for i in range(n):
        if i % 2 == 0:
            r, c = rng.integers(10, 60, 2)
            masks[i, r : r + 20, c : c + 10] = 1  # area 200
            probs[i][masks[i] == 1] = 0.6
            probs[i, 90:95, 0:30] = 0.4  # distractor: only thresholds >= 0.4 drop it
        else:
            probs[i, 50:53, 50:55] = 0.9  # a 15-pixel speck on an empty image
    return probs, masks


def test_search_finds_known_optimum():
    probs, masks = constructed()
    res = search(probs, masks)
    assert res.score == 1.0
    assert 0.40 <= res.threshold < 0.60  # keeps 0.6 pixels, drops 0.4 distractors
    assert 20 <= res.min_area <= 200  # drops 15-pixel specks, keeps 200-pixel masks
    assert res.score_at(0.5, 0) == 0.5  # without min-area every speck image scores 0
    assert res.score_at(0.3, 50) < 1.0  # distractors join the masks
    pp = postprocess(probs, res.threshold, res.min_area)
    assert competition_score(pp, masks) == 1.0


def test_grid_equals_brute_force():
    rng = np.random.default_rng(3)
    masks = np.zeros((25, 101, 101), np.uint8)
    for i in range(0, 25, 2):
        masks[i, : rng.integers(1, 101), : rng.integers(1, 101)] = 1
    noise = rng.uniform(0, 0.7, masks.shape)
    probs = np.clip(masks * rng.uniform(0.2, 0.8) + noise * rng.uniform(0, 1, (25, 1, 1)), 0, 1)
    thresholds, areas = np.arange(0, 100, 7) / 100, np.array([0, 30, 500, 3000])
    res = search(probs, masks, thresholds, areas)
    for i, t in enumerate(thresholds):
        for j, a in enumerate(areas):
            brute = competition_score(postprocess(probs, t, a), masks)
            assert res.grid[i, j] == pytest.approx(brute, abs=1e-12)


def test_counts_match_binarize_at_float16_boundaries():
    probs = np.array([0.5, 0.4999, 0.5001, 0.1, 0.9, 0.0], np.float32).reshape(1, 1, 6)
    masks = np.array([1, 0, 1, 0, 1, 0], np.uint8).reshape(1, 1, 6)
    thresholds = np.array([0.0, 0.1, 0.4999, 0.5, 0.9])
    pred_area, inter, true_area = threshold_counts(probs, masks, thresholds)
    for j, t in enumerate(thresholds):
        b = binarize(probs, t)
        assert pred_area[0, j] == b.sum() and inter[0, j] == (b & (masks == 1)).sum()
    assert true_area[0] == 3


def test_postprocess_min_area_empties_small_masks():
    probs = np.zeros((2, 101, 101), np.float32)
    probs[0, :3, :3] = 0.9  # 9 px
    probs[1, :5, :5] = 0.9  # 25 px
    out = postprocess(probs, 0.5, 10)
    assert out[0].sum() == 0 and out[1].sum() == 25
