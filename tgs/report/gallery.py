"""Gallery and coverage sections: OOF tiles (worst, best, blank) and the coverage of train
truth, OOF predictions and the submission's test predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tgs.data import rle
from tgs.data.folds import coverage
from tgs.report import plots
from tgs.report.analysis import OOF, coverage_hist, pick_galleries
from tgs.report.html import esc, img, pct
from tgs.report.sections import Context
from tgs.report.tiles import PRED, TRUTH, overlay, save_png, tile

TILE_SCALE = 2  # gallery tiles are shown at 2x, nearest-neighbour


def _caption(oof: OOF, i: int, short: bool = False) -> str:
    if short:
        return f"<b>{esc(oof.ids[i])}</b><br>score {oof.scores[i]:.2f}, {oof.pred_area[i]} px"
    score = f"<b>{esc(oof.ids[i])}</b> · score {oof.scores[i]:.2f}"
    size = oof.truth[i].size
    t, p = int(oof.true_area[i]), int(oof.pred_area[i])
    cls = f" · P(salt) {oof.cls[i]:.2f}" if oof.cls is not None else ""
    return (
        f"{score} · IoU {oof.iou[i]:.2f}{cls}<br>salt px: true {t} ({pct(t / size)}), "
        f"predicted {p} ({pct(p / size)})"
    )


def _gallery(ctx: Context, name: str, indices: list[int], compact: bool = False) -> str:
    """Tiles of OOF images `indices`; `compact`: the overlay alone at 1x (blank images)."""
    oof = ctx.oof
    figs = []
    for j, i in enumerate(indices):
        file = f"{name}_{j:02d}.png"
        draw = overlay if compact else tile
        rgb = draw(oof.images[i], oof.truth[i], oof.pred[i])
        save_png(ctx.figure(file), rgb)
        width = rgb.shape[1] * (1 if compact else TILE_SCALE)
        figs.append(
            f'<figure style="width:{width}px">{img(file, oof.ids[i], width, "tile")}'
            f"<figcaption>{_caption(oof, i, compact)}</figcaption></figure>"
        )
    return f'<div class="gallery">{"".join(figs)}</div>'


def _key(color: np.ndarray) -> str:
    return f'<span class="key" style="background: rgb{tuple(int(c) for c in color)}"></span>'


def galleries(ctx: Context) -> str:
    oof = ctx.oof
    picks = pick_galleries(oof)
    ctx.numbers["galleries"] = {k: [oof.ids[i] for i in v] for k, v in picks.items()}
    legend = (
        '<p class="note">Each tile: the image, then the same image with the true salt tinted '
        f"{_key(TRUTH)} and the predicted salt outlined {_key(PRED)}; shown at {TILE_SCALE}x, "
        "nearest-neighbour. Images are spread over the true coverage classes.</p>"
    )
    n_blank = int(oof.blank.sum())
    parts = [
        "<h2>Galleries</h2>",
        legend,
        f"<h3>Worst {len(picks['worst'])} OOF images (lowest scores, spread over the coverage "
        "classes)</h3>",
        _gallery(ctx, "worst", picks["worst"]),
        "<h3>Best images with salt (the best of each coverage class)</h3>",
        _gallery(ctx, "best", picks["best"]),
    ]
    if n_blank:
        rule = "predicted empty by the blank rule" if oof.post.blank_rule else "no blank rule"
        parts += [
            f"<h3>Blank images: {n_blank} in the OOF ({rule}), {len(picks['blank'])} shown</h3>",
            _gallery(ctx, "blank", picks["blank"], compact=True),
        ]
    else:
        parts.append('<p class="note">No blank (constant) image in the OOF.</p>')
    return "\n".join(parts)


def _test_masks(ctx: Context) -> np.ndarray | None:
    sub = ctx.facts.submission
    if sub is None:
        return None
    df = pd.read_csv(sub.csv, dtype=str, keep_default_na=False)
    return rle.decode_batch(df["rle_mask"].tolist())


def coverage_section(ctx: Context) -> str:
    hists: dict[str, np.ndarray] = {}
    if ctx.data is not None:
        hists[f"train truth ({len(ctx.data.ids)})"] = coverage_hist(ctx.data.masks)
    if ctx.oof is not None:
        hists[f"OOF predictions ({len(ctx.oof.ids)})"] = coverage_hist(ctx.oof.pred)
    test = _test_masks(ctx)
    if test is not None:
        hists[f"test predictions ({len(test)})"] = coverage_hist(test)
        ctx.numbers["test_empty"] = float(np.mean(coverage(test) == 0))
    if not hists:
        return ""
    ctx.numbers["coverage_hist"] = {k: v.tolist() for k, v in hists.items()}
    plots.coverage_figure(ctx.figure("coverage.png"), hists)
    note = (
        ""
        if test is not None
        else '<p class="note">no submission yet: test predictions not shown</p>'
    )
    return (
        "<h2>Coverage of predictions</h2>"
        + img("coverage.png", "share of images per coverage class")
        + note
    )
