import numpy as np
import pytest

from tgs.core.errors import ConfigError
from tgs.post.metric import competition_score
from tgs.post.rule import GATES, PostProcessing, binarize, gate_score, postprocess
from tgs.post.search import search_grid, threshold_counts
from tgs.run.records import Thresholds


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
    res = search_grid(probs, masks)
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
    res = search_grid(probs, masks, thresholds, areas)
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


def test_gate_scores_known_values():
    probs = np.zeros((3, 101, 101), np.float32)
    probs[0, 5, 7] = 0.8
    probs[1, 50:60, 50:60] = 0.30001  # rounded to float16 like binarize: 0.30004883
    cls = np.array([0.2, 0.6, 0.9], np.float32)
    np.testing.assert_array_equal(gate_score(probs, cls, "head"), cls)
    peak = gate_score(probs, cls, "mask_max")
    np.testing.assert_array_equal(peak, np.float16([0.8, 0.30001, 0.0]).astype(np.float32))
    np.testing.assert_array_equal(gate_score(probs, cls, "mean"), (cls + peak) / 2)
    assert gate_score(probs, None, "head") is None  # no head: no gate
    np.testing.assert_array_equal(gate_score(probs, None, "mask_max"), peak)
    assert gate_score(probs[:0], cls[:0], "mean").shape == (0,)
    with pytest.raises(ConfigError, match="needs the classifier head"):
        gate_score(probs, None, "mean")
    with pytest.raises(ConfigError, match="valid: " + ", ".join(GATES)):
        gate_score(probs, cls, "max")

    # thresholds.json: runs searched before `gate` (or without a head) gate on the head
    def recorded_gate(extra: dict) -> str:
        th = Thresholds.from_dict({"threshold": 0.5, "min_area": 0, **extra})
        return PostProcessing.from_thresholds(th).gate

    assert recorded_gate({}) == recorded_gate({"gate": None}) == "head"
    assert recorded_gate({"gate": "mask_max"}) == "mask_max"
    with pytest.raises(ConfigError, match="unknown gate"):
        recorded_gate({"gate": "max"})


def test_mean_gate_empties_what_neither_score_alone_can():
    """False salt is more confident than some true salt, so the pixel threshold cannot help; the
    head is unsure of two salt images, the mask max is fooled by an empty one: only their mean
    separates the four salt images from the four empty ones."""
    masks = np.zeros((8, 101, 101), np.uint8)
    masks[:4, 30:60, 30:60] = 1
    probs = np.where(masks, 0.6, 0.0).astype(np.float32)
    probs[:2] = np.where(masks[:2], 0.95, 0.0)  # confident masks, unsure head (cls 0.3)
    probs[4:, 40:70, 40:70] = 0.7  # false salt on the empty images...
    probs[4, 40:70, 40:70] = 0.9  # ...one of them confident
    cls = np.array([0.3, 0.3, 0.9, 0.9, 0.1, 0.1, 0.1, 0.4], np.float32)
    found = {
        g: search_grid(probs, masks, min_areas=[0], gate_scores=gate_score(probs, cls, g))
        for g in GATES
    }
    assert found["mean"].score == 1.0
    assert found["head"].score < 1.0 and found["mask_max"].score < 1.0
    best, mean = found["mean"], gate_score(probs, cls, "mean")
    pred = postprocess(probs, best.threshold, 0, mean, best.empty_threshold)
    assert competition_score(pred, masks) == 1.0
