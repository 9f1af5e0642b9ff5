"""Where the CV comes from: the run's OOF post-processed with its stored thresholds, scored per
image (the stored search.npz scores when they match), grouped by coverage class."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tgs.data.folds import coverage, coverage_class
from tgs.data.io import TrainData
from tgs.post.metric import counts, per_image_scores
from tgs.post.rule import PostProcessing, binarize, empty_rule, is_blank
from tgs.report.facts import Facts

CLASS_LABELS = ["0 (empty)"] + [f"{10 * c - 10}-{10 * c}%" for c in range(1, 11)]


@dataclass
class OOF:
    """The merged OOF of finished folds against the truth, post-processed as the run chose."""

    ids: list[str]
    images: np.ndarray  # uint8 (N, 101, 101)
    truth: np.ndarray  # uint8 0/1 (N, 101, 101)
    probs: np.ndarray  # float16 probabilities (N, 101, 101)
    cls: np.ndarray | None  # salt-present probabilities (N,)
    gated: np.ndarray | None  # the scores (N,) the empty gate thresholded (`post.gate`)
    post: PostProcessing  # threshold, min_area, empty_threshold, gate, blank_rule
    post_source: str  # where `post` comes from
    pred: np.ndarray  # uint8 0/1 (N, 101, 101) after post-processing
    scores: np.ndarray  # per-image competition score (N,)
    scores_source: str  # "search.npz" or "computed"
    iou: np.ndarray  # (N,), 1 where both masks are empty
    blank: np.ndarray  # bool (N,), constant images

    @cached_property
    def true_class(self) -> np.ndarray:
        return coverage_class(coverage(self.truth))

    @cached_property
    def true_area(self) -> np.ndarray:
        return self.truth.reshape(len(self.truth), -1).sum(axis=1)

    @cached_property
    def pred_area(self) -> np.ndarray:
        return self.pred.reshape(len(self.pred), -1).sum(axis=1)


def post_processing(facts: Facts) -> tuple[PostProcessing, str]:
    """The stored post-processing, or p > 0.5 alone before any search."""
    if facts.thresholds is None:
        return PostProcessing(), "p > 0.5 (no thresholds.json yet)"
    return PostProcessing.from_thresholds(facts.thresholds), "thresholds.json"


def _stored_scores(facts: Facts, ids: list[str]) -> np.ndarray | None:
    """search.npz's per-image scores in `ids` order, when it covers exactly these ids."""
    s = facts.search
    if s is None or "per_image" not in s or sorted(s["ids"].tolist()) != sorted(ids):
        return None
    order = {id_: i for i, id_ in enumerate(s["ids"].tolist())}
    return s["per_image"][[order[i] for i in ids]].astype(np.float64)


def analyse_oof(facts: Facts, data: TrainData) -> OOF:
    """Post-process the finished folds' OOF and score it against `data`'s masks."""
    ids, probs, cls, _ = facts.run.load_oof(facts.finished)
    rows = data.rows(ids)
    images, truth = data.images[rows], data.masks[rows]
    post, source = post_processing(facts)
    blank = is_blank(images)
    gated = post.gate_score(probs, cls)
    pred = post.apply(probs, cls, images)
    inter, union = counts(pred, truth)
    stored = _stored_scores(facts, ids)
    scores = stored if stored is not None else per_image_scores(pred, truth)
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return OOF(
        ids=ids,
        images=images,
        truth=truth,
        probs=probs,
        cls=cls,
        gated=gated,
        post=post,
        post_source=source,
        pred=pred,
        scores=scores,
        scores_source="search.npz" if stored is not None else "computed",
        iou=iou,
        blank=blank,
    )


def _row(label: str, sel: np.ndarray, scores: np.ndarray, iou: np.ndarray) -> dict:
    loss = 1.0 - scores
    total = float(loss.sum())
    n = int(sel.sum())
    return {
        "class": label,
        "n": n,
        "share": n / len(scores),
        "score": float(scores[sel].mean()) if n else None,
        "iou": float(iou[sel].mean()) if n else None,
        "loss_share": float(loss[sel].sum()) / total if total > 0 else 0.0,
    }


def class_table(oof: OOF) -> list[dict]:
    """Per coverage class (0, 0-10%, ..., 90-100%), then empty / non-empty / all: images,
    share, mean score, mean IoU, and the share of the loss (1 - score) the class causes."""
    cls = oof.true_class
    rows = [_row(label, cls == c, oof.scores, oof.iou) for c, label in enumerate(CLASS_LABELS)]
    rows.append(_row("empty", cls == 0, oof.scores, oof.iou))
    rows.append(_row("non-empty", cls > 0, oof.scores, oof.iou))
    rows.append(_row("all", np.ones(len(cls), bool), oof.scores, oof.iou))
    return rows


def empty_confusion(oof: OOF) -> dict:
    """The empty/salt decision: counts of truth x prediction, and why salt images were emptied
    (no pixel above threshold, area < min-area, empty gate, blank rule)."""
    true_salt, pred_salt = oof.true_area > 0, oof.pred_area > 0
    missed = np.flatnonzero(true_salt & ~pred_salt)
    post = oof.post
    raw = binarize(oof.probs[missed], post.threshold).sum(axis=(1, 2))
    by_area = (raw > 0) & empty_rule(raw, post.min_area)
    by_gate = np.zeros(len(missed), bool)
    if oof.gated is not None:
        by_gate = (raw > 0) & empty_rule(raw, 0, oof.gated[missed], post.empty_threshold)
    by_blank = oof.blank[missed] & post.blank_rule
    return {
        "empty_as_empty": int((~true_salt & ~pred_salt).sum()),
        "empty_as_salt": int((~true_salt & pred_salt).sum()),
        "salt_as_empty": len(missed),
        "salt_as_salt": int((true_salt & pred_salt).sum()),
        "missed_no_pixel": int((raw == 0).sum()),
        "missed_min_area": int(by_area.sum()),
        "missed_gate": int(by_gate.sum()),
        "missed_blank": int(by_blank.sum()),
    }


def spread(order: np.ndarray, classes: np.ndarray, n: int) -> list[int]:
    """The first `n` of `order` taken round-robin over `classes`: each class's first, then each
    class's second, ... (so one kind of image cannot fill a gallery)."""
    by_class = [order[classes[order] == c] for c in np.unique(classes[order])]
    picked: list[int] = []
    for rank in range(max(map(len, by_class), default=0)):
        if len(picked) >= n:
            break
        picked += [int(group[rank]) for group in by_class if rank < len(group)]
    return picked[:n]


def pick_galleries(oof: OOF, worst: int = 15, best: int = 10, blank: int = 10) -> dict:
    """Indices into the OOF, spread over true coverage classes: the worst images (lowest score,
    then IoU, biggest masks first), the best one of each class with salt, and blank images."""
    big = np.maximum(oof.true_area, oof.pred_area)
    worst_order = np.lexsort((-big, oof.iou, oof.scores))
    salt = np.flatnonzero(oof.true_area > 0)
    best_order = salt[np.lexsort((-oof.true_area[salt], -oof.iou[salt], -oof.scores[salt]))]
    worst_picked = spread(worst_order, oof.true_class, worst)
    worst_picked.sort(key=lambda i: (oof.scores[i], oof.iou[i]))
    return {
        "worst": worst_picked,
        "best": spread(best_order, oof.true_class, best),
        "blank": np.flatnonzero(oof.blank)[:blank].tolist(),
    }


def coverage_hist(masks: np.ndarray) -> np.ndarray:
    """Binary masks (N, H, W) -> fraction of images per coverage class 0..10, shape (11,)."""
    cls = coverage_class(coverage(masks))
    return np.bincount(cls, minlength=11)[:11] / max(len(cls), 1)
