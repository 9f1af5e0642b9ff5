"""The one mean of predictions: over TTA views (torch tensors), a run's models (folds x
snapshots) and the runs of a blend (numpy arrays). Pure: no I/O, no model.

A prediction is (pixel probabilities (N, ...), salt-present probabilities of a classifier head
(N,) or None). The head's probabilities are averaged only when every member has a head; else
the mean has none (None).

The arithmetic is fixed, so the same inputs give the same bytes: without weights, the members
are summed in order and the sum divided by their count; with weights, each member is multiplied
by its weight normalised to sum 1 (float32) and the products summed in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")  # numpy array or torch tensor
Prediction = tuple[T, T | None]


def _float32(x):
    """`x` as float32: numpy arrays by astype, torch tensors by .float()."""
    return x.astype(np.float32) if isinstance(x, np.ndarray) else x.float()


def mean(items: Sequence[T], weights: Sequence[float] | None = None) -> T:
    """The mean of equally shaped arrays or tensors (float32). One item comes back as it is.
    Without `weights`: (x0 + x1 + ...) / n; with: w0 x0 + w1 x1 + ..., w normalised to sum 1."""
    if not items:
        raise ValueError("mean of no predictions")
    if len(items) == 1:
        return items[0]
    if weights is None:
        total = _float32(items[0])
        for x in items[1:]:
            total = total + x
        return total / len(items)
    if len(weights) != len(items):
        raise ValueError(f"{len(weights)} weights for {len(items)} predictions")
    w = np.asarray(weights, dtype=np.float32) / np.float32(sum(weights))
    total = None
    for wi, x in zip(w, items, strict=True):
        part = wi * _float32(x)
        total = part if total is None else total + part
    return total


def mean_prediction(
    preds: Sequence[Prediction], weights: Sequence[float] | None = None
) -> Prediction:
    """[(probabilities (N, ...), salt-present probabilities (N,) or None)] -> their `mean`
    (with `weights` if given); the salt-present one only when every member has it, else None.
    One member comes back as it is."""
    if len(preds) == 1:
        return preds[0]
    probs = mean([p for p, _ in preds], weights)
    heads = [c for _, c in preds]
    cls = mean(heads, weights) if all(c is not None for c in heads) else None
    return probs, cls
