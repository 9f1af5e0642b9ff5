"""Budgeted runs: the plan fits the budget, lays the schedule over it, and survives resume."""

import json

import pandas as pd
import pytest

from tgs.budget import apply_plan, plan_epochs
from tgs.cli import main
from tgs.config import load_config

MEASURED = {"step_seconds": 0.5, "val_seconds": 4.0, "n_val": 200, "steps_per_epoch": 20}


def test_plan_fits_epochs_into_the_budget_and_keeps_stage_ratio():
    cfg = load_config(
        None, ["epochs=40", "stage2_epochs=10", "warmup_epochs=4", "budget_minutes=10"]
    )
    plan = plan_epochs(cfg, MEASURED, 600.0, waves=3, n_test=1000)
    assert plan["epoch_seconds"] == 14.0  # 20 steps x 0.5 s + a 4 s validation
    # reserve: OOF (200 imgs x 2 views) per fold + predict (1000 x 2 x 3 folds) + search
    assert plan["reserve_seconds"] == pytest.approx(3 * 8.0 + 120.0 + 10.0)
    total = plan["epochs"] + plan["stage2_epochs"]
    assert total == int(0.92 * plan["fold_seconds"] / 14.0)
    assert 3 * (total * 14.0) + plan["reserve_seconds"] <= 600.0
    assert plan["stage2_epochs"] == round(total * 10 / 50)  # the config's 4:1 ratio
    assert plan["warmup_epochs"] == round(4 * plan["epochs"] / 40)
    planned = apply_plan(cfg, plan)
    assert (planned.epochs, planned.stage2_epochs) == (plan["epochs"], plan["stage2_epochs"])
    assert apply_plan(load_config(None), plan) == load_config(None)  # no budget: unchanged


def test_slower_machine_gets_fewer_epochs_never_zero():
    cfg = load_config(None, ["epochs=55", "budget_minutes=30"])
    fast = plan_epochs(cfg, MEASURED, 1800.0, 3, 2000)["epochs"]
    slow = plan_epochs(cfg, {**MEASURED, "step_seconds": 2.0}, 1800.0, 3, 2000)["epochs"]
    assert fast > slow >= 1
    assert plan_epochs(cfg, MEASURED, 1.0, 3, 2000)["epochs"] == 1


def test_budgeted_run_plans_once_finishes_every_schedule_and_resumes_with_the_plan(
    synth_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    import tgs.budget

    real_probe = tgs.budget.probe
    measured = {}

    def probe(*args, **kw):  # the real probe runs; its answer is pinned so the plan is known
        measured.update(real_probe(*args, **kw))
        return {**measured, "step_seconds": 0.5, "val_seconds": 1.0}

    monkeypatch.setattr(tgs.budget, "probe", probe)
    run = tmp_path / "runs" / "b"
    args = [
        "run",
        "--data",
        str(synth_dir),
        "--run",
        str(run),
        "--no-report",
        "model_kwargs.n_filters=4",
        "geometry=resize",
        "size=32",
        "batch_size=16",
        "n_folds=2",
        "folds=null",  # the shipped cpu.yaml (the default config on a CPU) trains one fold
        "low_size=0",  # and resizes progressively: the pinned probe times one size only
        "jobs=1",
        "epochs=50",
        "budget_minutes=0.6",
        "lr=0.01",
        "min_lr=0.0001",
    ]
    assert main(args) == 0
    plan = json.loads((run / "plan.json").read_text())
    assert measured["steps_per_epoch"] == 1 and measured["step_seconds"] > 0
    # 36 s - reserve (2 x OOF 0.6 s + predict 0.6 s + 10 s) = 23.2 s per... 2 folds, 1.5 s epochs
    assert plan["epochs"] == int(0.92 * plan["fold_seconds"] / 1.5) and 3 <= plan["epochs"] < 50
    for k in (0, 1):
        log = pd.read_csv(run / f"fold{k}" / "log.csv")
        assert len(log) == plan["epochs"]  # every fold runs the planned schedule to its end
        assert json.loads((run / f"fold{k}" / "summary.json").read_text())["epochs"] == len(log)
    (run / "fold1" / "summary.json").unlink()  # as if fold 1 had been interrupted
    (run / "plan.json").write_text(json.dumps({**plan, "epochs": plan["epochs"] + 1}))
    assert main([*args, "--resume"]) == 0
    assert len(pd.read_csv(run / "fold1" / "log.csv")) == plan["epochs"] + 1  # kept the plan


def test_restart_cycles_stay_whole_and_ddp_ranks_split_the_steps():
    cfg = load_config(
        None,
        [
            "epochs=40",
            "scheduler=cosine_restarts",
            "cycle_epochs=10",
            "snapshots=true",
            "budget_minutes=10",
        ],
    )
    plan = plan_epochs(cfg, MEASURED, 600.0, waves=1, n_test=100)
    assert (
        plan["epochs"] % plan["cycle_epochs"] == 0 and plan["epochs"] // plan["cycle_epochs"] == 4
    )
    one = plan_epochs(load_config(None, ["budget_minutes=10"]), MEASURED, 600.0, 1, 100)
    four = plan_epochs(load_config(None, ["budget_minutes=10"]), MEASURED, 600.0, 1, 100, world=4)
    assert four["epoch_seconds"] == 0.5 * 5 + 4.0 and four["epochs"] > 2 * one["epochs"]
    # predict reserves every fold's model even when two folds train at once (2 waves of 2)
    two_waves = plan_epochs(load_config(None, ["budget_minutes=10"]), MEASURED, 600.0, 2, 1000, 4)
    assert two_waves["reserve_seconds"] == pytest.approx(2 * 8.0 + 1000 * 0.02 * 2 * 4 + 10.0)


def test_stage2_has_no_warmup_of_its_own():
    from tgs.train import stage2_config

    cfg = load_config(None, ["warmup_epochs=3", "stage2_epochs=2"])
    assert stage2_config(cfg).warmup_epochs == 0


def test_launch_combinations_that_cannot_work_are_refused(tmp_path):
    from tgs.errors import TGSError
    from tgs.pipeline import RunOptions, _check_launch

    cfg = load_config(None, ["budget_minutes=5"])
    with pytest.raises(TGSError, match="pick one"):
        _check_launch(RunOptions(gpus=["0", "1"], nproc=2), load_config(None))
    with pytest.raises(TGSError, match="several nodes"):
        _check_launch(RunOptions(nproc=2, torchrun=["--nnodes", "2", "--node_rank", "1"]), cfg)
    assert not _check_launch(
        RunOptions(torchrun=["--nnodes", "2", "--node_rank", "1"]), load_config(None)
    )
