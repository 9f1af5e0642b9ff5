import numpy as np
import pytest

from tgs.post.metric import competition_score, per_image_scores, score_from_counts


def masks_with_iou(inter: int, union: int) -> tuple[np.ndarray, np.ndarray]:
    """A (pred, true) pair of 101x101 masks with the given intersection and union."""
    pred = np.zeros((101, 101), np.uint8)
    true = np.zeros((101, 101), np.uint8)
    flat_p, flat_t = pred.reshape(-1), true.reshape(-1)
    flat_t[:inter] = 1
    flat_p[:inter] = 1
    flat_t[inter : inter + (union - inter)] = 1  # the rest of the union belongs to truth only
    return pred, true


def test_both_empty_scores_one():
    z = np.zeros((1, 101, 101))
    assert competition_score(z, z) == 1.0


def test_exactly_one_empty_scores_zero():
    z = np.zeros((1, 101, 101))
    o = np.zeros((1, 101, 101))
    o[0, 3, 3] = 1
    assert competition_score(o, z) == 0.0
    assert competition_score(z, o) == 0.0


def test_perfect_scores_one():
    m = np.zeros((1, 101, 101))
    m[0, 10:50, 20:30] = 1
    assert competition_score(m, m) == 1.0


@pytest.mark.parametrize(
    "inter,union,expected",
    [
        (50, 100, 0.0),  # IoU 0.50 is not > 0.50
        (51, 100, 0.1),  # just above 0.50
        (55, 100, 0.1),  # 0.55 is not > 0.55
        (56, 100, 0.2),
        (75, 100, 0.5),  # > 0.50 .. 0.70: five hits
        (95, 100, 0.9),  # 0.95 is not > 0.95
        (96, 100, 1.0),
        (49, 100, 0.0),
        (7, 10, 0.4),  # exactly 0.70: hits at 0.50, 0.55, 0.60, 0.65
    ],
)
def test_thresholds_are_strict(inter, union, expected):
    pred, true = masks_with_iou(inter, union)
    assert per_image_scores(pred[None], true[None])[0] == pytest.approx(expected)
    assert score_from_counts(np.array([inter]), np.array([union]))[0] == pytest.approx(expected)


def test_mean_over_images_and_reference_loop():
    rng = np.random.default_rng(0)
    pred = rng.uniform(size=(30, 101, 101)) < rng.uniform(0, 0.3, (30, 1, 1))
    true = np.logical_xor(pred, rng.uniform(size=pred.shape) < 0.05)
    true[:3] = False
    pred[:2] = False
    ref = []
    for p, t in zip(pred, true, strict=True):  # the competition's own definition, per image
        if not p.any() and not t.any():
            ref.append(1.0)
            continue
        iou = (p & t).sum() / (p | t).sum()
        ref.append(np.mean([iou > th for th in np.arange(0.5, 1.0, 0.05)]))
    np.testing.assert_allclose(per_image_scores(pred, true), ref)
    assert competition_score(pred, true) == pytest.approx(np.mean(ref))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        per_image_scores(np.zeros((2, 101, 101)), np.zeros((3, 101, 101)))
