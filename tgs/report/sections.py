"""The report's sections: each returns an HTML fragment, writes its figures into the output
folder and records the numbers it shows in `numbers` (report.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tgs.core import commands
from tgs.data.io import TrainData
from tgs.post.rule import GATE_LABELS, PostProcessing
from tgs.report import plots
from tgs.report.analysis import OOF, class_table, empty_confusion
from tgs.report.facts import Facts
from tgs.report.html import code_spans, duration, esc, fmt, img, kv_table, pct, table
from tgs.run.records import EncoderWeights, FoldRefit, FoldSummary, Plan, Thresholds


@dataclass
class Context:
    """What the sections share: the output folder, the run's files, the OOF analysis."""

    out: Path
    facts: Facts
    data: TrainData | None
    oof: OOF | None
    numbers: dict = field(default_factory=dict)
    images: list[str] = field(default_factory=list)

    def figure(self, name: str) -> Path:
        self.images.append(name)
        return self.out / name


def header(ctx: Context, notes: list[str]) -> str:
    f, th = ctx.facts, ctx.facts.thresholds
    parts = [
        f"<h1>Run {esc(f.run.name)}</h1>",
        f'<p class="sub">{esc(f.run.root)} · config <b>{esc(f.cfg.name)}</b>, model '
        f"{esc(f.cfg.model)}, {f.cfg.n_folds} folds x {f.planned_epochs} epochs</p>",
    ]
    if th is not None:
        ctx.numbers["cv"] = th.cv
        parts.append(
            f'<p class="cv">CV <b>{th.cv:.4f}</b> on {th.n_images} OOF images '
            f"(folds {esc(fmt(th.folds))}) · at p &gt; 0.5: {th.cv_at_half:.4f} · "
            f"all-empty baseline: {th.all_empty:.4f}</p>"
        )
    elif ctx.oof is not None:
        ctx.numbers["cv_at_0.5"] = float(ctx.oof.scores.mean())
        parts.append(
            f'<p class="cv">OOF score at p &gt; 0.5 <b>{ctx.oof.scores.mean():.4f}</b> on '
            f"{len(ctx.oof.ids)} images of finished folds {esc(fmt(f.finished))} (no threshold "
            "search yet)</p>"
        )
    ctx.numbers["missing"] = notes
    if notes:
        items = "".join(f"<li>{code_spans(n)}</li>" for n in notes)
        parts.append(f'<div class="missing"><b>missing</b><ul>{items}</ul></div>')
    return "\n".join(parts)


def _device(f: Facts) -> str:
    meta = f.meta
    cpu = f"{meta.cpu or '?'} x {meta.cpu_count or '?'} cores" if f.has_meta else "?"
    torch = (meta.versions or {}).get("torch")
    gpu = f"; GPU {meta.gpu}" if meta.gpu else ""
    return f"config device {f.cfg.device}; host {cpu}{gpu}" + (f"; torch {torch}" if torch else "")


def weights_text(record: EncoderWeights | None) -> str:
    """Where the run's pretrained encoder weights came from (meta.json), or from scratch."""
    if record is None:
        return "none (from scratch)"
    where = {"packaged": record.package, "file": record.weights}.get(
        record.source, f"the model hub ({record.weights})"
    )
    digest = f", sha256 {record.sha256[:16]}" if record.sha256 else ""
    return (
        f"{record.encoder} from {record.source}: {where}{digest}; inputs "
        f"normalised with mean {record.mean}, std {record.std}"
    )


def refit_text(r: FoldRefit) -> str:
    """One refit in words: what it timed, the ratio, and the epochs before and after."""
    which = "full-size epochs" if r.on_full_size else "epochs"
    return (
        f"after {r.after_epochs} epochs, its {which} took {r.ratio:.2f}x the probe's "
        f"estimate -> {r.total_epochs} epochs (was {r.planned_epochs})"
    )


def plan_text(plan: Plan, budget_minutes: float) -> str:
    """plan.json in a line: budget, measured epoch time, epochs chosen."""
    stage2 = plan.stage2_epochs
    return (
        f"{budget_minutes:g} min budget: {plan.epoch_seconds} s/epoch measured on "
        f"{plan.gpu or plan.cpu or '?'} -> {plan.epochs} epochs"
        + (f" + {stage2} stage 2" if stage2 else "")
        + f" per fold (config: {plan.config_epochs or '?'})"
    )


def glance(ctx: Context) -> str:
    """Config (diff from defaults, full folded), commit, data, folds file, CV, time, device."""
    f, th, meta = ctx.facts, ctx.facts.thresholds, ctx.facts.meta
    items: list[tuple[str, object]] = []
    if th is not None:
        rule = PostProcessing.from_thresholds(th)
        score = GATE_LABELS[rule.gate]
        items += [
            (
                "post-processing",
                f"p > {rule.threshold:.2f}, min-area {rule.min_area} px"
                + (
                    f", empty when {score} < {rule.empty_threshold:.2f}"
                    if rule.empty_threshold
                    else ""
                )
                + (", blank images empty" if rule.blank_rule else ""),
            ),
            (
                "OOF",
                f"{th.n_images} images, folds {fmt(th.folds)}, TTA {th.tta}"
                + ("" if th.complete else " (not every train image)"),
            ),
        ]
    wall = f.train_seconds()
    sub_seconds = f.submission.manifest.seconds if f.submission else None
    items += [
        ("git commit", meta.commit or "–"),
        ("data folder", meta.data or "–"),
        ("folds file", f"{meta.folds or '–'} (sha256 {meta.folds_sha256 or '–'})"),
        (
            "wall time",
            f"training {duration(wall)}"
            + (f" + predict {duration(sub_seconds)}" if sub_seconds else ""),
        ),
        ("device", _device(f)),
        ("encoder weights", weights_text(meta.encoder_weights)),
    ]
    if f.plan:
        items.append(("budget plan", plan_text(f.plan, f.cfg.budget_minutes)))
    for fold in f.folds:
        items += [(f"fold {fold.k} refit", refit_text(r)) for r in fold.refits]
    diff = f.config_diff()
    ctx.numbers["train_seconds"] = wall
    return (
        '<h2>The run at a glance</h2><div class="cols"><div>'
        + kv_table(items)
        + folds_table(ctx)
        + "</div><div>"
        "<h3>Config: keys that differ from the defaults</h3>"
        + table(["key", "this run", "default"], [(k, str(v), str(d)) for k, v, d in diff])
        + "<details><summary>full config (config.yaml)</summary><pre>"
        + esc(f.config_text())
        + "</pre></details></div></div>"
    )


def folds_table(ctx: Context) -> str:
    f = ctx.facts
    rows, out = [], []
    for fold in f.folds:
        s = fold.summary or FoldSummary()
        oof05 = s.oof_score_half
        secs = s.train_seconds or (fold.log["seconds"].sum() if fold.log is not None else None)
        rows.append(
            (
                fold.k,
                fold.status,
                f"{fold.epochs_done}/{f.fold_epochs(fold)}",
                s.best_epoch,
                s.best_val_score,
                oof05,
                s.n_train,
                s.n_val,
                duration(secs) if secs is not None else None,
            )
        )
        out.append(
            {
                "fold": fold.k,
                "status": fold.status,
                "best_epoch": s.best_epoch,
                "best_val_score": s.best_val_score,
                "oof_score_0.5": oof05,
            }
        )
    ctx.numbers["folds"] = out
    header_ = [
        "fold",
        "status",
        "epochs",
        "best epoch",
        "best val (p>0.5)",
        f"OOF (TTA {f.cfg.tta}, p>0.5)",
        "train",
        "val",
        "train time",
    ]
    return "<h3>Folds</h3>" + table(header_, rows)


def curves(ctx: Context) -> str:
    folds = [f for f in ctx.facts.folds if f.log is not None]
    if not folds:
        return '<h2>Learning curves</h2><p class="note">no fold has logged an epoch yet</p>'
    plots.learning_curves(ctx.figure("curves.png"), folds)
    return (
        "<h2>Learning curves</h2>"
        + img("curves.png", "training loss, validation score and learning rate per epoch")
        + '<p class="note">Validation score: fold validation images, p &gt; 0.5, no TTA, no '
        "min-area (as logged in log.csv while training).</p>"
    )


def where_cv(ctx: Context) -> str:
    """OOF score by coverage class and empty/non-empty, loss shares, the empty-gate confusion."""
    oof = ctx.oof
    rows = class_table(oof)
    conf = empty_confusion(oof)
    ctx.numbers.update(classes=rows, confusion=conf, n_oof=len(oof.ids))
    ctx.numbers["oof_mean_score"] = float(oof.scores.mean())
    plots.class_scores(ctx.figure("classes.png"), rows)
    cells = [
        (r["class"], r["n"], pct(r["share"]), r["score"], r["iou"], pct(r["loss_share"]))
        for r in rows
    ]
    post = oof.post
    src = (
        f"p &gt; {post.threshold:.2f}, min-area {post.min_area}"
        + (
            f", empty when {esc(GATE_LABELS[post.gate])} &lt; {post.empty_threshold:.2f}"
            if post.empty_threshold
            else ""
        )
        + (", blank rule" if post.blank_rule else "")
        + f" (from {esc(oof.post_source)}); per-image scores {esc(oof.scores_source)}"
    )
    reasons = missed_reasons(conf)
    confusion = table(
        ["truth \\ prediction", "empty", "salt"],
        [
            ("empty", conf["empty_as_empty"], conf["empty_as_salt"]),
            ("salt", conf["salt_as_empty"], conf["salt_as_salt"]),
        ],
    )
    return (
        "<h2>Where the CV comes from</h2>"
        f'<p class="note">OOF of finished folds, post-processed as the run chose: {src}. '
        "Loss share: the class's part of the total lost score (sum of 1 - score).</p>"
        '<div class="cols"><div>'
        + table(
            ["true coverage", "images", "share", "mean score", "mean IoU", "loss share"],
            cells,
            total_last=True,
        )
        + "</div><div><h3>Empty or salt?</h3>"
        + confusion
        + f'<p class="note" style="max-width:420px">{esc(reasons)}.</p></div></div>'
        + img("classes.png", "mean OOF score and loss share per coverage class")
    )


def missed_reasons(conf: dict) -> str:
    """Why salt images were predicted empty, as a sentence."""
    if not conf["salt_as_empty"]:
        return "no salt image was predicted empty"
    return (
        f"of the {conf['salt_as_empty']} salt images predicted empty: "
        f"{conf['missed_no_pixel']} had no pixel above the threshold, "
        f"{conf['missed_min_area']} fell under the min-area, "
        f"{conf['missed_gate']} were emptied by the gate, "
        f"{conf['missed_blank']} by the blank rule (a mask can have several reasons)"
    )


def search(ctx: Context) -> str:
    f = ctx.facts
    if f.search is None or f.thresholds is None:
        return ""
    plots.search_figure(ctx.figure("search.png"), f.search, f.thresholds)
    gated = len(f.search["empty_thresholds"]) > 1
    edges = grid_edges(f.search, f.thresholds)
    ctx.numbers["search_edges"] = edges
    warn = (
        '<div class="missing"><b>at the edge of the grid:</b> the chosen '
        + ", ".join(esc(e) for e in edges)
        + " is the last value searched; the optimum may lie beyond it (widen the grid, e.g. the "
        "config's <code>min_areas</code>)</div>"
        if edges
        else ""
    )
    return (
        "<h2>Post-processing search</h2>"
        + img("search.png", "CV over threshold and min-area; empty gate curve")
        + f'<p class="note">Grid stored in search.npz: {len(f.search["thresholds"])} thresholds x '
        f"{len(f.search['min_areas'])} min-areas"
        + (
            f" x {len(f.search['empty_thresholds'])} gates on "
            + esc(GATE_LABELS[PostProcessing.from_thresholds(f.thresholds).gate])
            if gated
            else ""
        )
        + "; the red star is the chosen point.</p>"
        + warn
    )


def grid_edges(search: dict, chosen: Thresholds) -> list[str]:
    """The chosen values that sit on the last (largest) value of their search axis."""
    rule = PostProcessing.from_thresholds(chosen)
    axes = (
        ("min-area", "min_areas", rule.min_area),
        ("threshold", "thresholds", rule.threshold),
        ("gate", "empty_thresholds", rule.empty_threshold),
    )
    out = []
    for label, axis, value in axes:
        values = search[axis]
        if len(values) > 1 and np.isclose(value, values[-1]):
            out.append(f"{label} {value:g}")
    return out


def submission(ctx: Context) -> str:
    sub = ctx.facts.submission
    if sub is None:
        return ""
    m = sub.manifest
    items = [
        ("file", str(sub.csv)),
        ("CV", m.cv),
        ("TTA", m.tta),
        ("test images", m.n_images),
        ("predicted empty", pct(m.empty_predicted) if m.empty_predicted is not None else None),
        ("written", m.created),
        ("predict time", duration(m.seconds) if m.seconds is not None else None),
        ("git commit", m.commit),
    ]
    if m.models is not None:
        items.append(("models", f"{len(m.models)}: {', '.join(m.models)}"))
    rows = [(r.submitted, r.message, r.status, r.public, r.private) for r in m.kaggle or []]
    scores = [r.to_dict() for r in m.kaggle or []]
    ctx.numbers["submission"] = {"file": str(sub.csv), "kaggle": scores}
    submit = commands.kaggle_submit(sub.csv, "MESSAGE") + ["--wait"]
    kaggle = (
        table(["submitted", "message", "status", "public", "private"], rows)
        if rows
        else f'<p class="note">not submitted to Kaggle yet (<code>{esc(submit)}</code> records '
        "the scores here)</p>"
    )
    return "<h2>Submission</h2>" + kv_table(items) + "<h3>Kaggle</h3>" + kaggle
