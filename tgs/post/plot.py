"""PNG plots of results people would rather see than read."""

from __future__ import annotations

import os

import numpy as np

from tgs.core.fileio import atomic_path


def plot_threshold_search(path: str | os.PathLike, result, title: str = "") -> None:
    """CV score against pixel threshold: best min-area per threshold, and min-area 0."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.subplots()
    ax.plot(
        result.thresholds,
        result.grid.max(axis=(1, 2)),
        label="best min-area (and gate) per threshold",
    )
    ax.plot(result.thresholds, result.grid[:, 0, 0], "--", label="no min-area, no gate")
    ax.axvline(result.threshold, color="gray", lw=0.8)
    ax.scatter(
        [result.threshold],
        [result.score],
        color="red",
        zorder=3,
        label=f"best {result.score:.4f} @ t={result.threshold:.2f}, area>={result.min_area}",
    )
    lo = float(np.percentile(result.grid.max(axis=(1, 2)), 5))
    ax.set_ylim(max(0.0, lo - 0.02), min(1.0, result.score + 0.02))
    ax.set_xlabel("pixel threshold (p > t)")
    ax.set_ylabel("CV competition score")
    ax.set_title(title or "threshold search on out-of-fold probabilities")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower center", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
