"""Budgeted runs: the plan fits the budget, lays the schedule over it, and survives resume."""

import json

import pandas as pd
import pytest

from tgs.budget import SAFETY, apply_plan, plan_epochs, replan
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
        "replan_after=0",  # the plan as probed (the refit is tested below)
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


def _replanned_cost(cfg, plan, new: dict, start: int, end: int) -> float:
    """Probed seconds of epochs [start, end) of `cfg` laid out as `new`."""
    from dataclasses import replace

    from tgs.budget import _planned_epoch_seconds, layout

    c = replace(cfg, **layout(cfg, end))
    return sum(_planned_epoch_seconds(c, plan, e) for e in range(start, end))


def test_replan_refits_the_epochs_to_what_the_first_epochs_really_took():
    cfg = load_config(None, ["budget_minutes=10", "epochs=40", "stage2_epochs=10"])
    plan = {"measured": MEASURED, "world": 1, "fold_seconds": 1000.0}  # 14 s epochs probed
    slow = replan(cfg, plan, [28.0, 28.0])  # twice the probe: 944 s left fit 31 more at 28 s
    assert slow["ratio"] == 2.0 and slow["after_epochs"] == 2
    assert slow["epochs"] + slow["stage2_epochs"] == 2 + int(SAFETY * 944 / 28)
    assert slow["stage2_epochs"] == round(33 * 10 / 50)  # the config's 4:1 ratio kept
    fast = replan(cfg, plan, [7.0, 7.0])  # half the probe: more epochs than planned
    assert fast["epochs"] + fast["stage2_epochs"] == 2 + int(SAFETY * 986 / 7)
    late = replan(cfg, plan, [600.0, 600.0])  # past the fold's time: one epoch to end on
    assert late["epochs"] + late["stage2_epochs"] == 3


def test_replan_prices_progressive_epochs_by_their_resolution():
    cfg = load_config(None, ["budget_minutes=10", "epochs=40", "low_size=32", "low_share=0.75"])
    measured = {**MEASURED, "low_step_seconds": 0.2}  # 8 s at low res, 14 s at full
    plan = {"measured": measured, "world": 1, "fold_seconds": 1000.0}
    new = replan(cfg, plan, [4.0, 4.0])  # two low-res epochs at half the probe's 8 s
    assert new["ratio"] == 0.5
    total = new["epochs"]
    room = SAFETY * (1000.0 - 8.0)
    assert 0.5 * _replanned_cost(cfg, plan, new, 2, total) <= room
    assert 0.5 * _replanned_cost(cfg, plan, new, 2, total + 1) > room  # no epoch more fits
    assert total > int(room / 7.0) + 2  # more than if every epoch were full size


def test_budgeted_fold_refits_its_schedule_after_two_epochs_and_resumes_with_it(
    synth_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    import tgs.budget

    real_probe = tgs.budget.probe

    def probe(*args, **kw):  # the real probe, made to say steps cost 3x what they do
        m = real_probe(*args, **kw)
        return {**m, "step_seconds": 3 * m["step_seconds"], "val_seconds": 3 * m["val_seconds"]}

    monkeypatch.setattr(tgs.budget, "probe", probe)
    run = tmp_path / "runs" / "r"
    args = ["run", "--data", str(synth_dir), "--run", str(run), "--no-report", *TINY]
    assert main(args) == 0
    plan = json.loads((run / "plan.json").read_text())
    refit = json.loads((run / "fold0" / "plan.json").read_text())
    assert refit["after_epochs"] == 2 and refit["planned_epochs"] == plan["epochs"]
    assert refit["ratio"] < 1 and refit["epochs"] > plan["epochs"]
    log = pd.read_csv(run / "fold0" / "log.csv")
    assert len(log) == refit["epochs"]  # the fold ran the refit schedule to its end
    assert log["lr"].iloc[-1] < 0.2 * log["lr"].max()  # ... the cosine laid over it
    (run / "fold0" / "summary.json").unlink()  # as if fold 0 had been interrupted
    (run / "fold0" / "plan.json").write_text(json.dumps({**refit, "epochs": refit["epochs"] + 1}))
    assert main([*args, "--resume"]) == 0
    assert len(pd.read_csv(run / "fold0" / "log.csv")) == refit["epochs"] + 1  # kept the refit


TINY = [
    "model_kwargs.n_filters=4",
    "geometry=resize",
    "size=32",
    "batch_size=16",
    "n_folds=2",
    "folds=[0]",
    "low_size=0",
    "jobs=1",
    "epochs=50",
    "budget_minutes=0.4",
    "lr=0.01",
    "min_lr=0.0001",
]
