"""`tgs report` on small runs written directly with numpy (no training): the page, its images,
its numbers against the run's files, partial runs, and folders that are not runs."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY
from tgs.cli.main import main
from tgs.core.config import Config, dump_config
from tgs.core.errors import TGSError
from tgs.data import rle
from tgs.data.folds import coverage, coverage_class, make_folds, save_folds
from tgs.data.io import load_train
from tgs.pipeline.stages import search_thresholds
from tgs.post.metric import per_image_scores
from tgs.post.rule import gate_score, is_blank, postprocess
from tgs.report import build_report
from tgs.report.html import code_spans, esc
from tgs.report.tiles import boundary
from tgs.run.folder import Run
from tgs.run.records import FoldRefit, FoldSummary, Measured, Plan

N_FOLDS = 2
EPOCHS = 3


@pytest.fixture(scope="module")
def data(synth_dir):
    return load_train(synth_dir)


def fake_probs(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy probabilities near the truth: float16 (N, 101, 101) in [0, 1]."""
    noise = rng.normal(0, 0.25, masks.shape)
    return np.clip(0.2 + 0.6 * masks + noise, 0, 1).astype(np.float16)


def write_fold(run: Run, data, folds: pd.DataFrame, k: int, finish: bool, seed: int = 0) -> None:
    """Fold k's files as training writes them: log.csv (and summary.json, oof.npz)."""
    rng = np.random.default_rng(seed + k)
    run.fold(k).dir.mkdir(parents=True, exist_ok=True)
    epochs = EPOCHS if finish else 1
    log = pd.DataFrame(
        {
            "epoch": np.arange(1, epochs + 1),
            "stage": [1] * epochs,
            "loss": np.linspace(1.0, 0.5, epochs),
            "val_score": [
                np.nan if e % 2 and e < epochs else 0.3 + 0.1 * e for e in range(1, epochs + 1)
            ],
            "lr": np.geomspace(1e-3, 1e-4, epochs),
            "seconds": np.full(epochs, 2.0),
        }
    )
    log.to_csv(run.fold(k).log, index=False)
    run.fold(k).best.write_bytes(b"not a real checkpoint")
    if not finish:
        return
    val = np.flatnonzero(folds["fold"].to_numpy() == k)
    probs = fake_probs(data.masks[val], rng)
    cls = rng.uniform(0, 1, len(val)).astype(np.float32)
    run.save_oof(k, [data.ids[i] for i in val], probs, cls)
    run.write(
        FoldSummary(
            fold=k,
            best_epoch=EPOCHS,
            best_val_score=0.6,
            oof_score=0.55,
            tta="hflip",
            models=[run.relative(run.fold(k).best)],
            n_train=len(data.ids) - len(val),
            n_val=len(val),
            epochs=EPOCHS,
            train_seconds=2.0 * EPOCHS,
        )
    )


def make_run(
    tmp_path, synth_dir, data, finished=(0, 1), started=(), threshold=True, **cfg_kw
) -> Run:
    folds_csv = tmp_path / "folds.csv"
    folds = make_folds(data.ids, data.masks, data.z, N_FOLDS, 0)
    save_folds(folds, folds_csv)
    cfg = Config(
        name="synthrun", n_folds=N_FOLDS, epochs=EPOCHS, cls_weight=0.2, lr=0.003, **cfg_kw
    )
    run = Run(tmp_path / "run").create(cfg, synth_dir, folds_csv)
    for k in finished:
        write_fold(run, data, folds, k, finish=True)
    for k in started:
        write_fold(run, data, folds, k, finish=False)
    if threshold:
        search_thresholds(run, synth_dir, data)
    return run


def write_submission(run: Run, synth_dir, monkeypatch, tmp_path) -> tuple[np.ndarray, dict]:
    """A submission of random masks where predict would put it, with a manifest that records
    Kaggle scores; returns (test masks (N, 101, 101), manifest)."""
    monkeypatch.chdir(tmp_path)
    th = run.thresholds().to_dict()
    ids = pd.read_csv(synth_dir / "sample_submission.csv", dtype=str)["id"].tolist()
    rng = np.random.default_rng(3)
    masks = (rng.uniform(size=(len(ids), 101, 101)) > 0.6).astype(np.uint8)
    masks[::3] = 0
    path = run.submission_path(th["cv"])
    path.parent.mkdir(parents=True)
    pd.DataFrame({"id": ids, "rle_mask": rle.encode_batch(masks)}).to_csv(path, index=False)
    manifest = {
        "submission": path.name,
        "run": str(run.root),
        "cv": th["cv"],
        "n_images": len(ids),
        "tta": "hflip",
        "kaggle": [{"message": "m", "status": "complete", "public": "0.8123", "private": "0.8345"}],
    }
    path.with_suffix(".json").write_text(json.dumps(manifest))
    return masks, manifest


def expected_classes(run: Run, data) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Per coverage class (count, mean score) straight from the run's files with the metric."""
    ids, probs, cls, _ = run.load_oof()
    th = run.thresholds().to_dict()
    rows = [data.ids.index(i) for i in ids]
    blank = is_blank(data.images[rows]) if th["blank_rule"] else None
    gated = gate_score(probs, cls, th.get("gate") or "head")
    pred = postprocess(
        probs, th["threshold"], th["min_area"], gated, th["empty_threshold"], blank=blank
    )
    truth = data.masks[rows]
    scores = per_image_scores(pred, truth)
    classes = coverage_class(coverage(truth))
    out = []
    for c in range(11):
        sel = classes == c
        out.append({"n": int(sel.sum()), "score": float(scores[sel].mean()) if sel.any() else None})
    return out, scores, pred


def page_images(index) -> list[str]:
    return re.findall(r'<img [^>]*src="([^"]+)"', index.read_text())


@pytest.mark.slow  # trains or spawns processes
def test_report_numbers_match_the_run_files(tmp_path, synth_dir, data, monkeypatch):
    run = make_run(tmp_path, synth_dir, data)
    test_masks, manifest = write_submission(run, synth_dir, monkeypatch, tmp_path)
    index = build_report(run)
    assert index == run.paths.report / "index.html"
    html = index.read_text()
    numbers = json.loads((index.parent / "report.json").read_text())

    images = page_images(index)
    assert {"curves.png", "classes.png", "search.png", "coverage.png"} <= set(images)
    assert any(i.startswith("worst_") for i in images) and any(
        i.startswith("best_") for i in images
    )
    for name in images:
        assert (index.parent / name).read_bytes()[:4] == b"\x89PNG", name
    assert sorted(images) == sorted(numbers["images"])
    assert "<script" not in html and "http://" not in html and "https://" not in html

    th = run.thresholds().to_dict()
    assert numbers["cv"] == th["cv"] and f"<b>{th['cv']:.4f}</b>" in html
    classes, scores, pred = expected_classes(run, data)
    assert np.isclose(scores.mean(), th["cv"])
    assert np.isclose(numbers["oof_mean_score"], th["cv"])
    assert numbers["n_oof"] == len(data.ids)
    for want, got in zip(classes, numbers["classes"][:11], strict=True):
        assert got["n"] == want["n"]
        assert (got["score"] is None) == (want["score"] is None)
        if want["score"] is not None:
            assert np.isclose(got["score"], want["score"])
            assert f"{want['score']:.4f}" in html
    all_row = numbers["classes"][-1]
    assert all_row["class"] == "all" and all_row["n"] == len(data.ids)
    assert np.isclose(all_row["score"], th["cv"]) and np.isclose(all_row["loss_share"], 1.0)
    assert np.isclose(sum(r["loss_share"] for r in numbers["classes"][:11]), 1.0)

    truth_salt = np.array([data.masks[data.ids.index(i)].any() for i in run.load_oof()[0]])
    pred_salt = pred.reshape(len(pred), -1).any(axis=1)
    conf = numbers["confusion"]
    assert conf["empty_as_salt"] == int((~truth_salt & pred_salt).sum())
    assert conf["salt_as_empty"] == int((truth_salt & ~pred_salt).sum())
    assert sum(
        conf[k] for k in ("empty_as_empty", "empty_as_salt", "salt_as_empty", "salt_as_salt")
    ) == len(data.ids)

    for fold in numbers["folds"]:
        assert fold["status"] == "finished" and fold["best_epoch"] == EPOCHS
    assert numbers["missing"] == []
    assert "missing</b>" not in html
    assert np.isclose(
        numbers["test_empty"], np.mean(test_masks.reshape(len(test_masks), -1).max(1) == 0)
    )
    hist = numbers["coverage_hist"]
    test_key = next(k for k in hist if k.startswith("test"))
    want = np.bincount(coverage_class(coverage(test_masks)), minlength=11) / len(test_masks)
    assert np.allclose(hist[test_key], want)
    assert "0.8123" in html and "0.8345" in html  # Kaggle's public / private score
    # the config diff (this run's lr against the default's) and the folded full config
    assert "<tr><td>lr</td><td>0.003</td><td>0.001</td></tr>" in html
    assert "<tr><td>seed</td>" not in html  # the default's: not a difference
    full = esc(dump_config(run.config()))
    assert f"<summary>full config (config.yaml)</summary><pre>{full}</pre>" in html


@pytest.mark.slow  # trains or spawns processes
def test_report_empties_by_the_recorded_gate_score(tmp_path, synth_dir, data):
    run = make_run(tmp_path, synth_dir, data, gate="mean")
    assert run.thresholds().gate == "mean"
    # a gate that bites: the mean gate and the head alone empty different images
    run.write(replace(run.thresholds(), empty_threshold=0.75))
    _, _, pred = expected_classes(run, data)
    ids, probs, cls, _ = run.load_oof()
    truth_salt = np.array([data.masks[data.ids.index(i)].any() for i in ids])
    th = run.thresholds().to_dict()
    blank = is_blank(data.images[[data.ids.index(i) for i in ids]]) if th["blank_rule"] else None
    by_head = postprocess(probs, th["threshold"], th["min_area"], cls, 0.75, blank=blank)
    by_head = by_head.any(axis=(1, 2))
    pred_salt = pred.reshape(len(pred), -1).any(axis=1)
    head_counts = ((truth_salt & ~by_head).sum(), (~truth_salt & by_head).sum())
    assert head_counts != ((truth_salt & ~pred_salt).sum(), (~truth_salt & pred_salt).sum())
    index = build_report(run)
    conf = json.loads((index.parent / "report.json").read_text())["confusion"]
    assert conf["salt_as_empty"] == int((truth_salt & ~pred_salt).sum())
    assert conf["empty_as_salt"] == int((~truth_salt & pred_salt).sum())
    html = index.read_text()
    assert "empty when mean(P(salt), max p) &lt; 0.75" in html
    assert "gates on mean(P(salt), max p)" in html


def test_partial_run_renders_what_exists_and_says_what_is_missing(tmp_path, synth_dir, data):
    run = make_run(tmp_path, synth_dir, data, finished=(0,), started=(1,), threshold=False)
    index = build_report(run, out=tmp_path / "page")
    html = index.read_text()
    numbers = json.loads((index.parent / "report.json").read_text())
    assert '<div class="missing"><b>missing</b><ul>' in html
    for note in numbers["missing"]:  # each note on the page as it is in report.json
        assert f"<li>{code_spans(note)}</li>" in html
    missing = " ".join(numbers["missing"])
    assert "fold 1" in missing and "thresholds.json" in missing and "submission" in missing
    assert [f["status"] for f in numbers["folds"]] == ["finished", "training"]
    for name in page_images(index):
        assert (index.parent / name).is_file()
    # fold 0's OOF at p > 0.5 with the one metric
    ids, probs, _ = _fold_oof(run, 0)
    truth = data.masks[[data.ids.index(i) for i in ids]]
    want = per_image_scores(probs > 0.5, truth).mean()
    assert numbers["n_oof"] == len(ids) and np.isclose(numbers["cv_at_0.5"], want)
    assert f"{want:.4f}" in html


@pytest.mark.slow  # trains or spawns processes
def test_budget_plan_sets_the_epochs_shown(tmp_path, synth_dir, data):
    run = make_run(
        tmp_path, synth_dir, data, finished=(0,), started=(1,), threshold=False, budget_minutes=5.0
    )
    measured = Measured(step_seconds=0.1, val_seconds=0.5, n_val=30, steps_per_epoch=10)
    plan = Plan(
        measured=measured,
        epoch_seconds=1.5,
        fold_seconds=60.0,
        epochs=7,
        stage2_epochs=1,
        config_epochs=EPOCHS,
        cpu="test cpu",
    )
    run.plans.write_plan(plan)
    html = build_report(run).read_text()
    assert "1/8" in html and "fold 1: still training or stopped (1/8 epochs" in html
    assert "5 min budget: 1.5 s/epoch measured on test cpu -&gt; 7 epochs + 1 stage 2" in html
    first = FoldRefit(after_epochs=2, ratio=0.9, epochs=8, stage2_epochs=1, planned_epochs=8)
    second = replace(first, after_epochs=6, ratio=0.8, epochs=9, on_full_size=True)
    run.plans.write_refits(1, [first, replace(second, planned_epochs=9)])
    html = build_report(run).read_text()  # the fold's two refits, in order; its epochs: 9 + 1
    assert "fold 1: still training or stopped (1/10 epochs" in html
    one = html.index("after 2 epochs, its epochs took 0.90x the probe")
    two = html.index("after 6 epochs, its full-size epochs took 0.80x the probe")
    assert "estimate -&gt; 9 epochs (was 8)" in html and "-&gt; 10 epochs (was 9)" in html
    assert one < two


def _fold_oof(run: Run, k: int):
    with np.load(run.fold(k).oof) as z:
        return z["ids"].tolist(), z["probs"], z["cls"]


def test_run_with_no_finished_fold_and_no_data(tmp_path, synth_dir, data):
    run = make_run(tmp_path, synth_dir, data, finished=(), started=(0,), threshold=False)
    index = build_report(run, data_dir=tmp_path / "nowhere")
    html = index.read_text()
    assert "fold 0: still training" in html and "fold 1: not started" in html
    assert "nowhere" in html  # the data folder that could not be read is named
    for name in page_images(index):
        assert (index.parent / name).is_file()


def test_not_a_run_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "notarun"
    folder.mkdir()
    (folder / "something.txt").write_text("x")
    with pytest.raises(TGSError, match="not a run folder"):
        build_report(Run(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["something.txt"]
    assert main(["report", "--run", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert "not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["report", "--run", str(tmp_path / "missing")]) == 1
    assert not (tmp_path / "missing").exists()


@pytest.mark.slow  # trains or spawns processes
def test_cli_prints_the_page_and_rebuilds_but_never_replaces_other_folders(
    tmp_path, synth_dir, data, capsys
):
    run = make_run(tmp_path, synth_dir, data)
    assert main(["report", "--run", str(run.root)]) == 0
    index = run.paths.report / "index.html"
    assert capsys.readouterr().out.strip() == str(index) and index.is_file()
    assert main(["report", "--run", str(run.root)]) == 0  # an earlier report is replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["report", "--run", str(run.root), "--out", str(other)]) == 1
    assert "not a tgs report" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["keep.txt"]


def test_boundary_outlines_the_mask_edge_and_closes_at_the_border():
    m = np.zeros((7, 7), np.uint8)
    m[2:5, 2:5] = 1
    b = boundary(m)
    assert b.sum() == 8 and not b[3, 3] and b[2, 2]
    full = boundary(np.ones((5, 5), np.uint8))
    assert full.sum() == 16 and not full[1:4, 1:4].any()  # a full mask is framed


TINY_RUN = TINY + "max_train_batches: 2\nthreads: 1\n"


@pytest.mark.slow  # trains or spawns processes
def test_tgs_run_writes_the_report_at_the_end(tmp_path, synth_dir, monkeypatch):
    from tgs.pipeline.job import RunOptions, run_pipeline

    monkeypatch.chdir(tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_RUN)
    opts = RunOptions(config=str(config), data=str(synth_dir), run=str(tmp_path / "runs/tiny"))
    result = run_pipeline(opts)
    assert result.report == result.run.paths.report / "index.html"
    numbers = json.loads((result.report.parent / "report.json").read_text())
    assert numbers["cv"] == result.cv and numbers["missing"] == []
    assert numbers["submission"]["file"] == str(result.submission)
    for name in page_images(result.report):
        assert (result.report.parent / name).is_file()
