"""Budgeted runs: the plan fits the budget, lays the schedule over it, and survives resume."""

import json
from dataclasses import replace

import pandas as pd
import pytest

from tests.helpers import TINY_ARGS
from tgs.budget.plan import apply_plan, plan_epochs, replan
from tgs.cli.main import main
from tgs.core.config import load_config
from tgs.run.records import Measured, Plan
from tgs.train.schedule import low_epochs

MEASURED = Measured(step_seconds=0.5, val_seconds=4.0, n_val=200, steps_per_epoch=20)


def _plan(measured: Measured, fold_seconds: float) -> Plan:
    """A plan giving a fold `fold_seconds`, probed as `measured` (one process per fold)."""
    return Plan(measured=measured, epoch_seconds=0.0, fold_seconds=fold_seconds, epochs=1)


def test_plan_fits_epochs_into_the_budget_and_keeps_stage_ratio():
    cfg = load_config(
        None, ["epochs=40", "stage2_epochs=10", "warmup_epochs=4", "budget_minutes=10"]
    )
    plan = plan_epochs(cfg, MEASURED, 600.0, waves=3, n_test=1000)
    assert plan.epoch_seconds == 14.0  # 20 steps x 0.5 s + a 4 s validation
    # reserve: OOF (200 imgs x 2 views) per fold + predict (1000 x 2 x 3 folds) + search
    assert plan.reserve_seconds == pytest.approx(3 * 8.0 + 120.0 + 10.0)
    total = plan.epochs + plan.stage2_epochs
    assert total == int(0.92 * plan.fold_seconds / 14.0)
    assert 3 * (total * 14.0) + plan.reserve_seconds <= 600.0
    assert plan.stage2_epochs == round(total * 10 / 50)  # the config's 4:1 ratio
    assert plan.warmup_epochs == round(4 * plan.epochs / 40)
    planned = apply_plan(cfg, plan)
    assert (planned.epochs, planned.stage2_epochs) == (plan.epochs, plan.stage2_epochs)
    assert apply_plan(load_config(None), plan) == load_config(None)  # no budget: unchanged


def test_slower_machine_gets_fewer_epochs_never_zero():
    cfg = load_config(None, ["epochs=55", "budget_minutes=30"])
    fast = plan_epochs(cfg, MEASURED, 1800.0, waves=3, n_test=2000).epochs
    slow_probe = replace(MEASURED, step_seconds=2.0)
    slow = plan_epochs(cfg, slow_probe, 1800.0, waves=3, n_test=2000).epochs
    assert fast > slow >= 1
    assert plan_epochs(cfg, MEASURED, 1.0, waves=3, n_test=2000).epochs == 1


@pytest.mark.slow  # trains or spawns processes
def test_budgeted_run_plans_once_finishes_every_schedule_and_resumes_with_the_plan(
    synth_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    import tgs.budget.probe

    real_probe = tgs.budget.probe.probe
    measured = []

    def probe(*args, **kw):  # the real probe runs; its answer is pinned so the plan is known
        measured.append(real_probe(*args, **kw))
        return replace(measured[-1], step_seconds=0.5, val_seconds=1.0)

    monkeypatch.setattr(tgs.budget.probe, "probe", probe)
    run = tmp_path / "runs" / "b"
    args = [
        "run",
        "--config",
        "cpu_scratch",
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
        "folds=null",  # the shipped cpu_scratch.yaml trains one fold
        "low_size=0",  # and resizes progressively: the pinned probe times one size only
        "replan_after=0",  # the plan as probed (the refit is tested below)
        "jobs=1",
        "epochs=50",
        "budget_minutes=0.6",
        "lr=0.01",
        "min_lr=0.0001",
    ]
    assert main(args) == 0
    plan = Plan.read(run / "plan.json")
    assert measured[0].steps_per_epoch == 1 and measured[0].step_seconds > 0
    # 36 s - reserve (2 x OOF 0.6 s + predict 0.6 s + 10 s) = 23.2 s per... 2 folds, 1.5 s epochs
    assert plan.epochs == int(0.92 * plan.fold_seconds / 1.5) and 3 <= plan.epochs < 50
    for k in (0, 1):
        log = pd.read_csv(run / f"fold{k}" / "log.csv")
        assert len(log) == plan.epochs  # every fold runs the planned schedule to its end
        assert json.loads((run / f"fold{k}" / "summary.json").read_text())["epochs"] == len(log)
    (run / "fold1" / "summary.json").unlink()  # as if fold 1 had been interrupted
    replace(plan, epochs=plan.epochs + 1).write(run / "plan.json")
    assert main([*args, "--resume"]) == 0
    assert len(pd.read_csv(run / "fold1" / "log.csv")) == plan.epochs + 1  # kept the plan


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
    assert plan.epochs % plan.cycle_epochs == 0 and plan.epochs // plan.cycle_epochs == 4
    budget = load_config(None, ["budget_minutes=10"])
    one = plan_epochs(budget, MEASURED, 600.0, waves=1, n_test=100)
    four = plan_epochs(budget, MEASURED, 600.0, waves=1, n_test=100, world=4)
    assert four.epoch_seconds == 0.5 * 5 + 4.0 and four.epochs > 2 * one.epochs
    # predict reserves every fold's model even when two folds train at once (2 waves of 2)
    two_waves = plan_epochs(budget, MEASURED, 600.0, waves=2, n_test=1000, n_models=4)
    assert two_waves.reserve_seconds == pytest.approx(2 * 8.0 + 1000 * 0.02 * 2 * 4 + 10.0)


def test_stage2_has_no_warmup_of_its_own():
    from tgs.train.schedule import stage2_config

    cfg = load_config(None, ["warmup_epochs=3", "stage2_epochs=2"])
    assert stage2_config(cfg).warmup_epochs == 0


def test_launch_combinations_that_cannot_work_are_refused(tmp_path):
    from tgs.core.errors import TGSError
    from tgs.pipeline.job import RunOptions, _check_launch

    cfg = load_config(None, ["budget_minutes=5"])
    with pytest.raises(TGSError, match="pick one"):
        _check_launch(RunOptions(gpus=["0", "1"], nproc=2), load_config(None))
    with pytest.raises(TGSError, match="several nodes"):
        _check_launch(RunOptions(nproc=2, torchrun=["--nnodes", "2", "--node_rank", "1"]), cfg)
    assert not _check_launch(
        RunOptions(torchrun=["--nnodes", "2", "--node_rank", "1"]), load_config(None)
    )


def test_replan_refits_the_epochs_to_what_the_real_epochs_took():
    cfg = load_config(None, ["budget_minutes=10", "epochs=40", "stage2_epochs=10"])
    plan = _plan(MEASURED, 1000.0)  # 14 s epochs probed
    slow = replan(cfg, plan, [50.0, 28.0])  # epoch 2 took twice the probe (epoch 1 not timed)
    assert slow.ratio == 2.0 and slow.after_epochs == 2 and slow.planned_epochs == 50
    assert slow.epochs + slow.stage2_epochs == 2 + 30  # 0.92 x 922 s left / 28 s = 30.3
    assert slow.stage2_epochs == round(32 * 10 / 50)  # the config's 4:1 ratio kept
    fast = replan(cfg, plan, [7.0, 7.0])  # half the probe: more epochs than planned
    assert fast.epochs + fast.stage2_epochs == 2 + 129  # 0.92 x 986 / 7 = 129.6
    late = replan(cfg, plan, [600.0, 600.0])  # past the fold's time: one more epoch to end on
    assert (late.epochs, late.stage2_epochs) == (3, 0)  # ... in stage 1, not stage 2


def test_replan_prices_progressive_epochs_by_their_resolution():
    cfg = load_config(None, ["budget_minutes=10", "epochs=40", "low_size=32", "low_share=0.75"])
    measured = replace(MEASURED, low_step_seconds=0.2)  # probed: 8 s at low res, 14 s at full
    plan = _plan(measured, 1000.0)
    new = replan(cfg, plan, [4.0, 4.0])  # low-res epochs at half the probe's 8 s
    assert new.ratio == 0.5
    # 0.92 x 992 s = 912.6 s: 194 epochs (146 at low res) cost 0.5 x (144 x 8 + 48 x 14) = 912
    # s; 195 (still 146 low) would cost 919 s
    assert new.epochs == 194


def test_replan_keeps_what_it_cannot_move():
    cycles = load_config(
        None, ["budget_minutes=1", "epochs=4", "scheduler=cosine_restarts", "cycle_epochs=2"]
    )
    plan = _plan(MEASURED, 100.0)
    short = replan(cycles, plan, [90.0, 90.0])  # out of time: whole cycles past the 2 done
    assert short.epochs == 4 and short.cycle_epochs == 2
    warm = load_config(None, ["budget_minutes=1", "epochs=40", "warmup_epochs=2"])
    assert replan(warm, replace(plan, fold_seconds=1000.0), [7.0, 7.0]).warmup_epochs == 2
    low = load_config(None, ["budget_minutes=1", "epochs=3", "low_size=16", "low_share=0.5"])
    kept = replan(low, plan, [1.0, 1.0])  # low res just over: no full-size epoch to price by
    assert kept.epochs == 3 and kept.kept == "no full-size epoch timed yet"


def test_replan_counts_the_time_outside_epochs():
    cfg = load_config(None, ["budget_minutes=10", "epochs=40"])
    plan = _plan(MEASURED, 1000.0)  # 14 s epochs probed
    plain = replan(cfg, plan, [14.0, 14.0])
    assert plain.epochs == 2 + 63  # 0.92 x 972 s / 14 s = 63.9
    # saves take 4 s after each epoch, the fold's process took 50 s before its first one:
    # 0.92 x (1000 - 28 - 8 - 50) s = 840.9 s at 14 + 4 s per epoch = 46 more
    slow = replan(cfg, plan, [14.0, 14.0], overhead=4.0, startup=50.0)
    assert slow.epochs == 2 + 46 and slow.ratio == 1.0
    assert (slow.overhead_seconds, slow.startup_seconds) == (4.0, 50.0)


def test_second_replan_prices_full_size_epochs_and_keeps_the_low_ones():
    cfg = load_config(None, ["budget_minutes=10", "epochs=40", "low_size=32", "low_share=0.75"])
    measured = replace(MEASURED, low_step_seconds=0.2)  # probed: 8 s at low res, 14 s at full
    plan = _plan(measured, 1000.0)
    # 30 low-res epochs at 4 s, then full-size ones at 10 s (the first, not timed) and 7 s
    new = replan(cfg, plan, [4.0] * 30 + [10.0, 7.0])
    assert new.on_full_size and new.ratio == 0.5 and new.after_epochs == 32
    # 0.92 x (1000 - 137) s = 794 s at 7 s per full-size epoch: 113 more
    assert new.epochs == 32 + 113
    refit = apply_plan(cfg, new)
    assert low_epochs(refit) == 30  # the low-resolution epochs stay the 30 trained
    one = replan(cfg, plan, [4.0] * 30 + [7.0])  # one full-size epoch: that one is timed
    assert one.ratio == 0.5 and one.epochs == 31 + 114  # 0.92 x 873 s / 7 s = 114.7


def _fold_with_plan(tmp_path, data, folds, name: str, *extra: str):
    """A budgeted fold-0 run whose plan says an epoch costs 2 s (val included; 1 s at low
    resolution), 8 epochs, 20 s."""
    from tgs.run.folder import Run
    from tgs.train.schedule import steps_per_epoch

    cfg = load_config(None, [*TINY_ARGS, "epochs=8", "budget_minutes=1", "lr=0.01", *extra])
    run = Run(tmp_path / name).create(cfg)
    steps = steps_per_epoch(int((folds["fold"] != 0).sum()), cfg)
    measured = Measured(
        step_seconds=2.0 / steps,
        low_step_seconds=1.0 / steps,
        val_seconds=0.0,
        n_val=int((folds["fold"] == 0).sum()),
        steps_per_epoch=steps,
    )
    run.plans.write_plan(Plan(measured=measured, epoch_seconds=2.0, fold_seconds=20.0, epochs=8))
    return run, cfg


class _Clock:
    """time.time() for the trainer: every call is 1 s later, so every epoch takes 1 s; each
    perf_counter() call is `save` s later, so each checkpoint save takes `save` s (0: free)."""

    def __init__(self, save: float = 0.0):
        self.now, self.perf, self.save = 0.0, 0.0, save

    def time(self) -> float:
        self.now += 1.0
        return self.now

    def perf_counter(self) -> float:
        self.perf += self.save
        return self.perf


def _killed_and_resumed(tmp_path, data, folds, monkeypatch, killed_in: int, *extra, seen=None):
    """A fresh copy of `_fold_with_plan`'s fold whose process dies at the start of epoch
    `killed_in` (0-based), then resumed to its end; `seen(trainer, epoch)` is called before each
    resumed epoch. Returns the run."""
    from tgs.pipeline.stages import train_fold
    from tgs.train.trainer import FoldTrainer

    real_epoch = FoldTrainer.run_epoch

    def killed(self, epoch):
        if epoch == killed_in:
            raise KeyboardInterrupt
        real_epoch(self, epoch)

    def resumed(self, epoch):
        if seen is not None:
            seen(self, epoch)
        real_epoch(self, epoch)

    again, cfg = _fold_with_plan(tmp_path, data, folds, "killed", *extra)
    monkeypatch.setattr(FoldTrainer, "run_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train_fold(again, cfg, data, folds, 0)
    monkeypatch.setattr(FoldTrainer, "run_epoch", resumed)
    train_fold(again, cfg, data, folds, 0, resume=True)
    monkeypatch.setattr(FoldTrainer, "run_epoch", real_epoch)
    return again


@pytest.mark.slow  # trains or spawns processes
def test_budgeted_fold_refits_after_two_epochs_and_a_resumed_fold_keeps_the_refit(
    tmp_path, data, folds, monkeypatch
):
    from tgs.pipeline.stages import train_fold

    monkeypatch.setattr("tgs.train.trainer.time", _Clock())
    run, cfg = _fold_with_plan(tmp_path, data, folds, "whole")
    train_fold(run, cfg, data, folds, 0)
    refit = json.loads((run.root / "fold0" / "plan.json").read_text())
    # 1 s epochs against 2 s probed: 0.92 x (20 - 2) s left / 1 s = 16 more epochs
    assert (refit["ratio"], refit["after_epochs"], refit["epochs"]) == (0.5, 2, 18)
    whole = pd.read_csv(run.root / "fold0" / "log.csv")
    assert len(whole) == 18  # the fold ran the refit schedule to its end
    assert whole["lr"].iloc[-1] < 0.02 * whole["lr"].max()  # ... its cosine stretched over it
    assert whole["lr"].is_monotonic_decreasing  # the learning rate never jumps at the refit

    # the process dies in the first epoch after the refit
    again = _killed_and_resumed(tmp_path, data, folds, monkeypatch, 2)
    resumed = pd.read_csv(again.root / "fold0" / "log.csv")
    assert resumed["lr"].tolist() == whole["lr"].tolist()  # same epochs, same schedule
    assert resumed["loss"].tolist() == pytest.approx(whole["loss"].tolist())


@pytest.mark.slow  # trains or spawns processes
@pytest.mark.parametrize("killed_in", [4, 8])  # between the refits; right after the second
def test_progressive_fold_refits_again_on_its_full_size_epochs_and_resumes_there(
    tmp_path, data, folds, monkeypatch, killed_in
):
    from tgs.pipeline.stages import train_fold

    monkeypatch.setattr("tgs.train.trainer.time", _Clock())
    extra = ("low_size=16", "low_share=0.5")
    run, cfg = _fold_with_plan(tmp_path, data, folds, "whole", *extra)
    train_fold(run, cfg, data, folds, 0)
    second = json.loads((run.root / "fold0" / "plan.json").read_text())
    first = second["previous"]
    # 1 s low-res epochs as probed: 0.92 x 18 s = 16.6 s buys 4 more low (1 s) + 6 full (2 s)
    assert (first["ratio"], first["epochs"], first["on_full_size"]) == (1.0, 12, False)
    # after 6 low + 2 full, 1 s full-size epochs against 2 s probed: 0.92 x 12 s / 1 s = 11 more
    assert (second["ratio"], second["after_epochs"], second["epochs"]) == (0.5, 8, 19)
    assert second["on_full_size"] and second["low_share"] == 6 / 19
    whole = pd.read_csv(run.root / "fold0" / "log.csv")
    assert len(whole) == 19
    assert whole["lr"].iloc[-1] < 0.02 * whole["lr"].max()
    assert whole["lr"].is_monotonic_decreasing  # no jump at either refit
    sizes = []

    def record_size(trainer, epoch):
        sizes.append(epoch < low_epochs(trainer.cfg))

    again = _killed_and_resumed(
        tmp_path, data, folds, monkeypatch, killed_in, *extra, seen=record_size
    )
    # the epochs after the kill at their sizes: the 6 low-res epochs stay 6
    assert sizes == [e < 6 for e in range(killed_in, 19)]
    assert json.loads((again.root / "fold0" / "plan.json").read_text()) == second
    resumed = pd.read_csv(again.root / "fold0" / "log.csv")
    assert resumed["lr"].tolist() == whole["lr"].tolist()
    assert resumed["loss"].tolist() == pytest.approx(whole["loss"].tolist())


def test_fold_whose_checkpoints_take_as_long_as_its_epochs_still_fits_its_time(
    tmp_path, data, folds, monkeypatch
):
    """On a GPU an epoch takes 2-4 s and saving last.pt 0.3-1 s: a refit on the epochs' own
    time alone plans past the fold's time (measured: 5 folds at once on one H100 ran 23% over
    a 2.5-minute budget). Here every save takes as long as an epoch (1 s)."""
    from tgs.pipeline.stages import train_fold

    monkeypatch.setattr("tgs.train.trainer.time", _Clock(save=1.0))
    run, cfg = _fold_with_plan(tmp_path, data, folds, "slow-saves")
    train_fold(run, cfg, data, folds, 0)
    refit = json.loads((run.root / "fold0" / "plan.json").read_text())
    assert refit["overhead_seconds"] == 1.0  # the save after epoch 1, timed
    # 2 epochs + 2 saves spent of 20 s; 0.92 x 16 s / (1 s epoch + 1 s save) = 7 more
    assert (refit["ratio"], refit["epochs"]) == (0.5, 9)
    log = pd.read_csv(run.root / "fold0" / "log.csv")
    assert len(log) == 9 and log["seconds"].sum() + 9 * 1.0 <= 20.0  # saves included
    # (without the saves counted: 18 epochs, 36 s of a 20 s fold)


@pytest.mark.parametrize(
    "gpus, jobs, waves, parallel",
    [([], 5, 1, 5), (["0", "1", "2", "3"], 5, 2, 1), (["0", "1"], 1, 3, 1), ([], 2, 3, 2)],
)
def test_plan_counts_the_folds_that_train_at_once(
    synth_dir, monkeypatch, gpus, jobs, waves, parallel
):
    """5 folds: `jobs` at once on one device (the probe runs as many at once), or one per GPU
    with --gpus whatever `jobs` says (a GPU recipe's `jobs: 5` on a 4-GPU box: 2 waves)."""
    import tgs.pipeline.job
    from tgs.pipeline.job import Job, RunOptions, _plan

    seen = {}
    monkeypatch.setattr(tgs.pipeline.job, "ensure_plan", lambda *a, **kw: seen.update(kw))
    opts = RunOptions(gpus=gpus, jobs=jobs)
    job = Job(synth_dir, "demo", load_config(None), None, [0, 1, 2, 3, 4], cores=0, ranks=1)
    _plan(None, job, None, None, [0, 1, 2, 3, 4], opts=opts, spent=0.0)
    assert (seen["waves"], seen["parallel"], seen["n_models"]) == (waves, parallel, 5)


@pytest.mark.slow  # trains or spawns processes
def test_a_resumed_fold_still_counts_the_saves_timed_before_it_was_killed(
    tmp_path, data, folds, monkeypatch
):
    """Each epoch's save time travels in the next checkpoint's history: a fold killed before
    its refit (here after 3 epochs, refit after 4) refits on the saves its first process timed."""
    from tgs.pipeline.stages import train_fold

    monkeypatch.setattr("tgs.train.trainer.time", _Clock(save=1.0))
    run, cfg = _fold_with_plan(tmp_path, data, folds, "whole", "replan_after=4")
    train_fold(run, cfg, data, folds, 0)
    refit = json.loads((run.root / "fold0" / "plan.json").read_text())
    # 4 epochs + 4 saves spent of 20 s; 0.92 x 12 s / (1 s epoch + 1 s save) = 5 more
    assert (refit["overhead_seconds"], refit["saves_timed"], refit["epochs"]) == (1.0, True, 9)
    again = _killed_and_resumed(tmp_path, data, folds, monkeypatch, 3, "replan_after=4")
    assert json.loads((again.root / "fold0" / "plan.json").read_text()) == refit
