"""Post-processing of probability maps and its joint search on OOF with the competition metric.

Post-processing: pixel > threshold (compared in float16 -> float32, exactly as searched), then a
mask with fewer than `min_area` pixels becomes empty. The search visits every (threshold,
min_area) pair in one pass over the pixels: per image, a histogram of probability bins over all
pixels and over true pixels gives predicted area and intersection at every threshold by
cumulative sums.

The empty gate thresholds one score per image (`gate_score`): the classifier head's salt-present
probability (`head`), the mask's highest pixel probability (`mask_max`), or their mean (`mean`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tgs.core.config import key_choices
from tgs.core.errors import ConfigError

if TYPE_CHECKING:
    from tgs.run.records import Thresholds

GATES = key_choices("gate")


GATE_LABELS = {"head": "P(salt)", "mask_max": "max p", "mean": "mean(P(salt), max p)"}


def check_gate(name: str) -> str:
    """`name` if it is a gate score (GATES), else a ConfigError listing them."""
    if name not in GATES:
        raise ConfigError(f"unknown gate {name!r} (valid: {', '.join(GATES)})")
    return name


def gate_score(probs: np.ndarray, cls: np.ndarray | None, gate: str = "head") -> np.ndarray | None:
    """The per-image score (N,) in [0, 1] the empty gate compares with its threshold.

    probs: (N, H, W) probabilities; cls: (N,) the head's salt-present probabilities or None.
    `head`: cls (None without a head: no gate); `mask_max`: the highest pixel probability
    (rounded to float16 like `binarize`); `mean`: (cls + mask_max) / 2, which needs the head.
    """
    check_gate(gate)
    if gate == "head":
        return None if cls is None else np.asarray(cls, dtype=np.float32)
    peak = np.asarray(probs, dtype=np.float16).max(axis=(1, 2)).astype(np.float32)
    if gate == "mask_max":
        return peak
    if cls is None:
        raise ConfigError("gate 'mean' needs the classifier head (cls_weight > 0)")
    return (np.asarray(cls, dtype=np.float32) + peak) / np.float32(2)


def binarize(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Probabilities (any shape) -> bool, p > threshold after rounding p to float16."""
    return np.asarray(probs, dtype=np.float16).astype(np.float32) > np.float32(threshold)


def postprocess(
    probs: np.ndarray,
    threshold: float = 0.5,
    min_area: int = 0,
    gate_scores: np.ndarray | None = None,
    empty_threshold: float = 0.0,
    *,
    blank: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities (N, H, W) -> uint8 masks (N, H, W).

    A mask becomes empty when it has fewer than `min_area` pixels, when its gate score (N,)
    (`gate_score`: the classifier's salt-present probability by default) is below
    `empty_threshold`, or when `blank` (N,) marks a constant image.
    """
    masks = binarize(probs, threshold)
    area = masks.sum(axis=(1, 2))
    masks[empty_rule(area, min_area, gate_scores, empty_threshold, blank)] = False
    return masks.astype(np.uint8)


def empty_rule(area, min_area, gate_scores=None, empty_threshold=0.0, blank=None) -> np.ndarray:
    """Which predictions are emptied: area < min_area, gate score (N,) < empty_threshold, or
    blank."""
    emptied = np.asarray(area) < min_area
    if gate_scores is not None:
        scores = np.asarray(gate_scores, dtype=np.float32)
        emptied = emptied | (scores < np.float32(empty_threshold)).reshape(
            scores.shape + (1,) * (emptied.ndim - 1)
        )
    if blank is not None:
        blank = np.asarray(blank, dtype=bool)
        emptied = emptied | blank.reshape(blank.shape + (1,) * (emptied.ndim - 1))
    return emptied


def is_blank(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) -> True where constant (every such train mask is empty)."""
    flat = np.asarray(images).reshape(len(images), -1)
    return flat.min(axis=1) == flat.max(axis=1)


@dataclass(frozen=True)
class PostProcessing:
    """The rule that turns probabilities into submitted masks: pixel > `threshold`, then a mask
    is emptied when it has fewer than `min_area` pixels, when its `gate` score (`gate_score`)
    is below `empty_threshold` (0: no gate), or, with `blank_rule`, when its image is constant.
    Predict, the Kaggle kernel, pseudo-labels, the report and the scripts all apply this."""

    threshold: float = 0.5
    min_area: int = 0
    empty_threshold: float = 0.0
    gate: str = "head"
    blank_rule: bool = False

    def __post_init__(self) -> None:
        check_gate(self.gate)

    @classmethod
    def from_thresholds(cls, th: Thresholds) -> PostProcessing:
        """The rule a thresholds.json record applies; runs searched before `gate` existed (or
        without a head: gate null) gate on the head."""
        return cls(
            threshold=th.threshold,
            min_area=th.min_area,
            empty_threshold=th.empty_threshold or 0.0,
            gate=th.gate or "head",
            blank_rule=bool(th.blank_rule),
        )

    def gate_score(self, probs: np.ndarray, cls: np.ndarray | None) -> np.ndarray | None:
        """The per-image score (N,) the gate compares with `empty_threshold` (None: no gate)."""
        return gate_score(probs, cls, self.gate)

    def blank(self, images: np.ndarray) -> np.ndarray | None:
        """bool (N,): the constant uint8 images (N, H, W) the blank rule empties (None: off)."""
        return is_blank(images) if self.blank_rule else None

    def apply(self, probs: np.ndarray, cls: np.ndarray | None, images: np.ndarray) -> np.ndarray:
        """probs (N, H, W) probabilities, cls (N,) the head's salt-present probabilities or
        None, images uint8 (N, H, W) -> uint8 0/1 masks (N, H, W)."""
        return postprocess(
            probs,
            self.threshold,
            self.min_area,
            self.gate_score(probs, cls),
            self.empty_threshold,
            blank=self.blank(images),
        )

    def describe(self) -> dict:
        """What is applied, as pseudo.json records it: the gate's score name only when a gate
        cuts (empty_threshold > 0), else None."""
        return {
            "threshold": self.threshold,
            "min_area": self.min_area,
            "gate": self.gate if self.empty_threshold else None,
            "empty_threshold": self.empty_threshold,
            "blank_rule": self.blank_rule,
        }
