"""The report's figures (matplotlib, Agg): learning curves, score by coverage class, the
post-processing search and coverage histograms. Each function writes one PNG."""

from __future__ import annotations

import os

import numpy as np

from tgs.post.rule import GATE_LABELS, PostProcessing
from tgs.report.analysis import CLASS_LABELS
from tgs.report.facts import FoldFacts
from tgs.run.records import Thresholds

DPI = 90
MARGINS = {"left": 0.06, "right": 0.985, "bottom": 0.15, "top": 0.91, "wspace": 0.25}
SHORT_LABELS = ["0"] + [f"{10 * c - 10}-{10 * c}" for c in range(1, 11)]


def _subplots(*grid: int, figsize: tuple[float, float]):
    """A figure of its own (matplotlib.figure.Figure, no pyplot): rendering it never touches
    the caller's matplotlib backend or global figure list."""
    from matplotlib.figure import Figure  # matplotlib: only when plotting

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid)


def _save(fig, path: str | os.PathLike, **margins: float) -> None:
    """Fixed margins (tight_layout measures every label: most of a figure's time)."""
    fig.subplots_adjust(**{**MARGINS, **margins})
    fig.savefig(path, dpi=DPI)


def learning_curves(path: str | os.PathLike, folds: list[FoldFacts]) -> None:
    """Train loss, validation score (p > 0.5, no TTA) and learning rate per epoch, one line per
    fold; each fold's best epoch dotted, stage boundaries dashed."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _subplots(1, 3, figsize=(13, 3.6))
    boundaries: set[float] = set()
    for i, f in enumerate(folds):
        if f.log is None:
            continue
        c, d = f"C{i}", f.log
        v = d.dropna(subset=["val_score"])  # epochs without validation (val_every) are NaN
        marker = "." if len(d) < 4 else None
        axes[0].plot(d["epoch"], d["loss"], color=c, label=f"fold {f.k}", marker=marker)
        axes[1].plot(v["epoch"], v["val_score"], color=c, marker="." if len(v) < 4 else None)
        axes[2].plot(d["epoch"], d["lr"], color=c, marker=marker)
        if len(v):
            best = v["val_score"].idxmax()
            axes[1].plot(v["epoch"][best], v["val_score"][best], "o", color=c, ms=6)
        boundaries |= {float(e) - 0.5 for e in d["epoch"][d["stage"].diff().fillna(0) != 0]}
    for e in sorted(boundaries):
        for ax in axes:
            ax.axvline(e, color="gray", ls="--", lw=0.9)
        axes[0].annotate(
            " stage 2",
            (e, 1),
            xycoords=("data", "axes fraction"),
            va="top",
            fontsize=8,
            color="gray",
        )
    titles = ("training loss", "validation score (p > 0.5, no TTA; dot = best)", "learning rate")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[1].set_ylabel("competition score")
    if all(f.log["lr"].gt(0).all() for f in folds if f.log is not None):
        axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    _save(fig, path)


def class_scores(path: str | os.PathLike, rows: list[dict]) -> None:
    """Per coverage class: mean score (bars, with counts) and share of the loss."""
    rows = rows[: len(CLASS_LABELS)]
    x = np.arange(len(rows))
    fig, axes = _subplots(1, 2, figsize=(13, 3.6))
    score = [r["score"] if r["score"] is not None else 0 for r in rows]
    bars = axes[0].bar(x, score, color="C0")
    for b, r in zip(bars, rows, strict=True):
        axes[0].annotate(
            f"n={r['n']}",
            (b.get_x() + b.get_width() / 2, b.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    axes[0].set_ylim(0, 1.08)
    axes[0].set_ylabel("mean competition score")
    axes[0].set_title("OOF score by true coverage class", fontsize=10)
    axes[1].bar(x, [100 * r["loss_share"] for r in rows], color="C3")
    axes[1].set_ylabel("% of the total loss (1 - score)")
    axes[1].set_title("where the lost score is", fontsize=10)
    for ax in axes:
        ax.set_xticks(x, SHORT_LABELS, fontsize=8)
        ax.set_xlabel("salt coverage class (% of the image)")
        ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def search_figure(path: str | os.PathLike, search: dict, chosen: Thresholds) -> None:
    """Score over threshold x min-area at the chosen gate (heatmap), score against threshold,
    and the empty gate curve when there is one; the chosen point marked on each."""
    grid, t, a, g = (search[k] for k in ("grid", "thresholds", "min_areas", "empty_thresholds"))
    rule = PostProcessing.from_thresholds(chosen)
    ti = int(np.argmin(np.abs(t - rule.threshold)))
    ai = int(np.argmin(np.abs(a - rule.min_area)))
    gi = int(np.argmin(np.abs(g - rule.empty_threshold)))
    gated = len(g) > 1
    fig, axes = _subplots(1, 3 if gated else 2, figsize=(13 if gated else 10, 3.8))
    best = float(grid[ti, ai, gi])
    sheet = grid[:, :, gi].T  # (A, T)
    im = axes[0].imshow(
        sheet,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        vmin=max(best - 0.1, float(sheet.min())),
        vmax=best,
        extent=(t[0], t[-1], -0.5, len(a) - 0.5),
    )
    axes[0].set_yticks(np.arange(len(a))[::2], [str(v) for v in a[::2]], fontsize=7)
    axes[0].plot(t[ti], ai, "r*", ms=12, mec="white")
    axes[0].set_xlabel("pixel threshold (p > t)")
    axes[0].set_ylabel("min-area (pixels)")
    gate_txt = f", gate {g[gi]:.2f}" if gated else ""
    axes[0].set_title(f"CV over threshold x min-area{gate_txt}", fontsize=10)
    fig.colorbar(im, ax=axes[0], label="CV score")
    axes[1].plot(t, grid[:, ai, gi], label=f"min-area {a[ai]}{gate_txt}")
    axes[1].plot(t, grid[:, 0, 0], "--", label="no min-area, no gate")
    axes[1].plot(t[ti], best, "r*", ms=12)
    low = min(np.percentile(grid[:, ai, gi], 25), np.percentile(grid[:, 0, 0], 25))
    axes[1].set_ylim(max(0.0, low - 0.02), min(1.0, best + 0.02))
    axes[1].set_xlabel("pixel threshold (p > t)")
    axes[1].set_ylabel("CV score")
    axes[1].set_title("CV against threshold", fontsize=10)
    axes[1].legend(fontsize=8, loc="lower center")
    if gated:
        axes[2].plot(g, grid[ti, ai, :], label=f"t={t[ti]:.2f}, min-area {a[ai]}")
        axes[2].plot(g, grid.max(axis=(0, 1)), ":", label="best t and min-area per gate")
        axes[2].plot(g[gi], best, "r*", ms=12)
        score = GATE_LABELS[rule.gate]
        axes[2].set_xlabel(f"gate: empty when {score} < g")
        axes[2].set_ylabel("CV score")
        axes[2].set_title("empty gate", fontsize=10)
        axes[2].legend(fontsize=8, loc="lower center")
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
    _save(fig, path, wspace=0.42)


def coverage_figure(path: str | os.PathLike, hists: dict[str, np.ndarray]) -> None:
    """Share of images per coverage class, one bar group per source (train truth, OOF and
    test predictions)."""
    fig, ax = _subplots(figsize=(10, 3.4))
    x = np.arange(11)
    width = 0.8 / max(len(hists), 1)
    for i, (label, h) in enumerate(hists.items()):
        ax.bar(x + (i - (len(hists) - 1) / 2) * width, 100 * h, width, label=label)
    ax.set_xticks(x, SHORT_LABELS, fontsize=8)
    ax.set_xlabel("salt coverage class (% of the image)")
    ax.set_ylabel("% of images")
    ax.set_title("coverage: truth against predictions", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    _save(fig, path)
