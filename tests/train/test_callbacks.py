"""The trainer's callbacks (tgs.train.callbacks, tgs.budget.refit): when each hook runs, the
validation cadence, stopping, the EMA's weights and state, and when a budget refit is due."""

from types import SimpleNamespace

import pytest
import torch

from tests.helpers import TINY_ARGS
from tgs.budget.refit import BudgetRefit, budget_callbacks, fold_callbacks, refit_due
from tgs.core.config import load_config
from tgs.core.errors import TGSError
from tgs.models.checkpoint import read_checkpoint
from tgs.run.folder import Run
from tgs.run.records import FoldRefit
from tgs.train.callbacks import (
    EMA,
    Callback,
    FreezeEncoder,
    Snapshots,
    TimeLimit,
    ValidateEvery,
    config_callbacks,
)
from tgs.train.rng import seed_everything
from tgs.train.trainer import build_trainer


def _trainer(tmp_path, data, folds, callbacks, *overrides, name="run"):
    """A trainer with `callbacks` (None: the fold's own, `fold_callbacks`)."""
    cfg = load_config(None, [*TINY_ARGS, "batch_size=8", "max_train_batches=2", *overrides])
    seed_everything(cfg.seed)
    run = Run(tmp_path / name).create(cfg)
    callbacks = fold_callbacks(cfg) if callbacks is None else callbacks
    return build_trainer(cfg, data, folds, 0, run, callbacks=callbacks)


class Recorder(Callback):
    """Records every hook call; stops after `stop_after` epochs when set."""

    def __init__(self, stop_after=None):
        self.calls, self.stop_after = [], stop_after

    def setup(self, t):
        self.calls.append("setup")

    def on_fit_start(self, t):
        self.calls.append("fit_start")

    def on_step(self, t):
        self.calls.append("step")

    def on_epoch_end(self, t, epoch):
        assert len(t.history) == epoch + 1  # the epoch's row is in, last.pt is not yet
        self.calls.append(f"epoch_end {epoch}")

    def on_save(self, t, epoch, score):
        self.calls.append(f"save {epoch}")

    def should_stop(self, t, epoch):
        return self.stop_after is not None and epoch + 1 >= self.stop_after


def test_hooks_run_in_order_and_once_per_step_and_epoch(tmp_path, data, folds):
    rec = Recorder()
    t = _trainer(tmp_path, data, folds, [rec], "epochs=2")
    assert rec.calls == ["setup"]  # at construction, before any resume
    t.fit()
    epoch = ["step", "step", "epoch_end {e}", "save {e}"]
    expected = ["setup", "fit_start"] + [c.format(e=e) for e in (0, 1) for c in epoch]
    assert rec.calls == expected


def test_without_a_cadence_only_each_stage_end_is_validated(tmp_path, data, folds):
    t = _trainer(tmp_path, data, folds, [], "epochs=3", "stage2_epochs=2")
    t.fit()
    validated = [row.validated for row in t.history]
    assert validated == [False, False, True, False, True]  # end of stage 1 and of stage 2


def test_validate_every_adds_its_epochs(tmp_path, data, folds):
    t = _trainer(tmp_path, data, folds, [ValidateEvery(2)], "epochs=5")
    assert [t.validates(e) for e in range(5)] == [False, True, False, True, True]


def test_a_stop_between_validations_validates_and_saves_the_last_epoch(tmp_path, data, folds):
    t = _trainer(tmp_path, data, folds, [ValidateEvery(10), Recorder(stop_after=2)], "epochs=6")
    summary = t.fit()
    assert len(t.history) == 2 and summary.epochs == 2
    assert not t.history[0].validated and t.history[1].validated
    assert read_checkpoint(t.paths.best)["epoch"] == 1  # best.pt holds the stopped epoch


def test_time_limit_stops_before_an_epoch_would_pass_it(tmp_path, data, folds):
    trainer = SimpleNamespace(history=[SimpleNamespace(seconds=30.0)], fold=0)
    now = [1000.0]
    limit = TimeLimit(1.0, clock=lambda: now[0])  # an injected clock: no machine speed
    limit.on_fit_start(trainer)
    now[0] += 20  # 20 s spent: another 30 s epoch ends at 50 s < 60 s
    assert not limit.should_stop(trainer, 0)
    now[0] += 10  # 30 s: 60 s, not past the limit
    assert not limit.should_stop(trainer, 0)
    now[0] += 10  # 40 s spent: 70 s > 60 s
    assert limit.should_stop(trainer, 0)


def test_ema_weights_are_validated_saved_and_resumed(tmp_path, data, folds):
    t = _trainer(tmp_path, data, folds, [EMA(0.5)], "epochs=2")
    assert t.eval_model is not t.model
    start = {k: v.clone() for k, v in t.eval_model.state_dict().items()}
    t.fit()
    moved = t.eval_model.state_dict()
    assert any(not torch.equal(start[k], v) for k, v in moved.items())  # updated at each step
    last = read_checkpoint(t.paths.last)
    ema_model = t.eval_model.state_dict()
    assert all(torch.equal(last["model"][k], v) for k, v in ema_model.items())  # saved: EMA's
    assert any(not torch.equal(t.model.state_dict()[k], v) for k, v in ema_model.items())
    again = _trainer(tmp_path, data, folds, [EMA(0.5)], "epochs=2")  # on t's run folder
    again.restore()
    for k, v in again.eval_model.state_dict().items():
        assert torch.equal(v, ema_model[k])  # the average itself comes back, not a fresh copy


def test_a_folds_callbacks_follow_the_config():
    kinds = [type(c) for c in fold_callbacks(load_config(None, []))]
    assert kinds == [ValidateEvery]
    cfg = load_config(None, ["ema=0.99", "snapshots=true", "max_minutes=5"])
    assert [type(c) for c in config_callbacks(cfg)] == [ValidateEvery, EMA, Snapshots, TimeLimit]
    assert budget_callbacks(cfg) == [] and len(fold_callbacks(cfg)) == 4
    frozen = load_config(None, ["freeze_encoder_epochs=2"])
    assert [type(c) for c in fold_callbacks(frozen)] == [ValidateEvery, FreezeEncoder]
    budgeted = load_config(None, ["budget_minutes=10"])
    assert [type(c) for c in budget_callbacks(budgeted)] == [BudgetRefit]
    assert [type(c) for c in fold_callbacks(budgeted)] == [ValidateEvery, BudgetRefit]
    assert budget_callbacks(load_config(None, ["budget_minutes=10", "replan_after=0"])) == []


@pytest.mark.parametrize(
    "overrides, refits, n, due",
    [
        ([], [], 5, False),  # no budget
        (["budget_minutes=5"], [], 1, False),  # replan_after (2) epochs not run yet
        (["budget_minutes=5"], [], 2, True),
        (["budget_minutes=5", "epochs=2"], [], 2, False),  # stage 1 is over
        (["budget_minutes=5"], [{"from_epochs": 20}], 4, False),  # refit once without low_size
        (["budget_minutes=5", "low_size=16"], [{"from_epochs": 20}], 16, False),
        (["budget_minutes=5", "low_size=16"], [{"from_epochs": 20}], 17, True),  # 15 low + 2
        (
            ["budget_minutes=5", "low_size=16"],
            [{"from_epochs": 20, "on_full_size": True}],
            17,
            False,
        ),
        (["budget_minutes=5", "low_size=16"], [{}], 17, False),  # an older record
    ],
)
def test_refit_due(overrides, refits, n, due):
    refits = [FoldRefit(epochs=20, **r) for r in refits]
    assert refit_due(load_config(None, overrides), refits, n) is due


def test_init_from_weights_that_do_not_fit_name_the_source(tmp_path, data, folds):
    t = _trainer(tmp_path, data, folds, None, name="s1")
    t.fit()
    with pytest.raises(TGSError, match=r"init_from .*best.pt does not fit model 'seed_unet'"):
        _trainer(tmp_path, data, folds, None, "model_kwargs.n_filters=8", f"init_from={t.run.root}")
