"""tgs.pipeline.fold: what `tgs train` does around the trainer: the fold check before anything
is written, the budget plan of a budgeted fold trained on its own, and when its time began."""

import time

import pytest

from tests.helpers import tiny_yaml
from tgs.core.errors import TGSError
from tgs.core.procs import FOLD_LAUNCHED, fold_started
from tgs.data.folds import make_folds, save_folds
from tgs.pipeline import fold as fold_module
from tgs.pipeline.fold import run_train
from tgs.pipeline.options import TrainOptions
from tgs.pipeline.stages import load_data
from tgs.run.records import FoldSummary


@pytest.fixture
def inputs(synth_dir, tmp_path):
    """(config file, folds CSV of 2 folds) for the synthetic data."""
    data = load_data(synth_dir)
    folds = tmp_path / "folds.csv"
    save_folds(make_folds(data.ids, data.masks, data.z, 2, 0), folds)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_yaml())
    return cfg, folds


@pytest.fixture
def calls(monkeypatch):
    """The train_fold and ensure_plan calls run_train makes, recorded instead of run."""
    seen = {"train_fold": [], "ensure_plan": []}

    def train_fold(*args, **kw):
        seen["train_fold"].append((args, kw))
        return FoldSummary(fold=args[4])

    monkeypatch.setattr(fold_module, "train_fold", train_fold)
    monkeypatch.setattr(
        fold_module, "ensure_plan", lambda *a, **kw: seen["ensure_plan"].append((a, kw))
    )
    return seen


def _opts(cfg, folds, data, fold, run, *overrides, resume=False) -> TrainOptions:
    return TrainOptions(
        fold=fold,
        config=str(cfg),
        overrides=list(overrides),
        data=str(data),
        folds=str(folds),
        run=str(run),
        resume=resume,
    )


def test_a_fold_not_in_the_folds_file_is_refused_before_anything_is_written(
    synth_dir, inputs, tmp_path, calls
):
    cfg, folds = inputs
    message = rf"^fold 3 is not in {folds} \(folds: \[0, 1\]\)$"
    with pytest.raises(TGSError, match=message):
        run_train(_opts(cfg, folds, synth_dir, 3, tmp_path / "r"))
    assert not (tmp_path / "r").exists() and calls["train_fold"] == []


def test_a_fold_launched_by_tgs_run_started_at_its_launch(
    synth_dir, inputs, tmp_path, calls, monkeypatch
):
    """Its interpreter, imports and data count toward its budget; a `tgs train` of its own
    starts now."""
    cfg, folds = inputs
    monkeypatch.setenv(FOLD_LAUNCHED, "1234.5")
    summary = run_train(_opts(cfg, folds, synth_dir, 1, tmp_path / "r", "seed=3", resume=True))
    assert summary == FoldSummary(fold=1)
    (run, config, data, fold_df, fold), kw = calls["train_fold"][0]
    resume, dist, started = kw["resume"], kw["dist"], kw["started"]
    assert (run.root, config.seed, fold, resume, started) == (tmp_path / "r", 3, 1, True, 1234.5)
    assert len(data.ids) == len(fold_df) == 60 and not dist.enabled
    assert run.paths.config.is_file()  # the run was created
    assert calls["ensure_plan"] == []  # no budget

    monkeypatch.delenv(FOLD_LAUNCHED)
    t0 = time.time()
    run_train(_opts(cfg, folds, synth_dir, 0, tmp_path / "r2"))
    assert t0 <= calls["train_fold"][1][1]["started"] <= time.time()  # launched here, now


def test_fold_started_reads_the_launch_time(monkeypatch):
    monkeypatch.setenv(FOLD_LAUNCHED, "1234.5")
    assert fold_started() == 1234.5
    monkeypatch.delenv(FOLD_LAUNCHED)
    t0 = time.time()
    assert t0 <= fold_started() <= time.time()


def test_a_budgeted_fold_on_its_own_is_planned_first(synth_dir, inputs, tmp_path, calls):
    cfg, folds = inputs
    run_train(_opts(cfg, folds, synth_dir, 1, tmp_path / "r", "budget_minutes=5"))
    (run, config, data, fold_df, fold), kw = calls["ensure_plan"][0]
    n_folds, n_test, spent = kw["waves"], kw["n_test"], kw["spent"]
    assert (run.root, config.budget_minutes, fold, n_folds, n_test, spent) == (
        tmp_path / "r",
        5.0,
        1,
        2,
        20,
        0.0,
    )
    assert len(calls["train_fold"]) == 1
