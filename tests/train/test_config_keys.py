"""Config keys that change training do what they say: optimizer, schedules, runtime options."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import TINY_ARGS, fold_trainer
from tgs.core.config import load_config
from tgs.data.dataset import SaltDataset
from tgs.models.checkpoint import read_checkpoint
from tgs.pipeline.stages import train_fold
from tgs.predict.inference import Runtime
from tgs.run.folder import Run
from tgs.train.loop import epoch_loader
from tgs.train.schedule import build_optimizer, build_scheduler
from tgs.train.trainer import FoldTrainer

TINY = [*TINY_ARGS, "batch_size=8", "max_train_batches=2"]


def _trainer(cfg, data, folds, tmp_path, name="r"):
    return fold_trainer(cfg, data, folds, tmp_path / name)


def test_sgd_is_plain_momentum_without_decay_on_norm_and_bias(data, folds, tmp_path):
    cfg = load_config(None, [*TINY, "optimizer=sgd", "momentum=0.8", "weight_decay=0.01"])
    opt = _trainer(cfg, data, folds, tmp_path).opt
    assert isinstance(opt, torch.optim.SGD)
    assert {g["momentum"] for g in opt.param_groups} == {0.8}
    assert not any(g["nesterov"] for g in opt.param_groups)
    decay = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in opt.param_groups}
    assert set(decay) == {0.0, 0.01}
    model = _trainer(cfg, data, folds, tmp_path, "r2").model
    no_decay = sum(p.numel() for n, p in model.named_parameters() if p.ndim <= 1)
    assert decay[0.0] == no_decay  # biases and BatchNorm weights


def test_warmup_then_cosine_per_step():
    cfg = load_config(None, ["epochs=4", "warmup_epochs=1", "lr=0.01", "min_lr=0"])
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_scheduler(cfg, opt, steps=10)
    lrs = []
    for update in range(1, 41):
        sched.step_update(update)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] < 0.002 and all(a < b for a, b in zip(lrs[:9], lrs[1:9], strict=False))
    for update in (10, 20, 33):  # then the cosine over all 40 steps, updated every step
        expect = 0.01 * (1 + np.cos(np.pi * update / 40)) / 2
        assert lrs[update - 1] == pytest.approx(expect, rel=1e-6)


def test_plateau_halves_lr_after_three_flat_epochs_and_resumes(data, folds, tmp_path, monkeypatch):
    cfg = load_config(None, [*TINY, "scheduler=plateau", "epochs=6", "lr=0.01"])
    t = _trainer(cfg, data, folds, tmp_path)
    monkeypatch.setattr(FoldTrainer, "val_score", lambda self: 0.5)
    for epoch in range(5):
        t.run_epoch(epoch)
    log = pd.read_csv(Run(tmp_path / "r").fold(0).log)
    assert log["lr"].tolist() == [0.01, 0.01, 0.01, 0.01, 0.01]
    assert t.opt.param_groups[0]["lr"] == pytest.approx(0.005)  # after the 5th flat epoch
    resumed = _trainer(cfg, data, folds, tmp_path)
    resumed.restore()
    assert resumed.opt.param_groups[0]["lr"] == pytest.approx(0.005)
    assert resumed.sched.state_dict()["num_bad_epochs"] == t.sched.state_dict()["num_bad_epochs"]


def test_max_minutes_stops_before_the_budget_is_passed(data, folds, tmp_path):
    cfg = load_config(None, [*TINY, "epochs=5", "max_minutes=0.000001"])
    summary = train_fold(Run(tmp_path / "m").create(cfg), cfg, data, folds, 0)
    assert summary.epochs == 1 and len(pd.read_csv(Run(tmp_path / "m").fold(0).log)) == 1


def test_channels_last_off_keeps_contiguous_weights_same_predictions(data, folds, tmp_path):
    """The two layouts compute the same forward pass: compared in fp32 (`amp=false`; a CPU with
    native bf16 autocasts, and bf16 rounds the two layouts' sums differently, up to ~5e-4 here),
    where they differ only in summation order (~1e-6 on a probability)."""
    on = load_config(None, [*TINY, "channels_last=true", "amp=false"])
    off = load_config(None, [*TINY, "channels_last=false", "amp=false"])
    assert Runtime.from_config(off).memory_format == torch.contiguous_format
    t_on, t_off = (_trainer(c, data, folds, tmp_path, n) for c, n in ((on, "a"), (off, "b")))

    def conv(t):  # a 3x3 conv with several input channels: the layouts differ
        return next(
            m.weight
            for m in t.model.modules()
            if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size == (3, 3)
        )

    assert conv(t_off).is_contiguous()
    assert conv(t_on).is_contiguous(memory_format=torch.channels_last)
    assert not conv(t_on).is_contiguous()
    a, _ = t_on.predict()
    b, _ = t_off.predict()
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_num_workers_loader_is_deterministic_per_epoch(data):
    cfg = load_config(None, ["batch_size=8", "num_workers=2"])
    ds = SaltDataset(data.images[:24], data.masks[:24], None)
    rt = Runtime.from_config(cfg)

    def batches(epoch):
        return [x.clone() for x, _ in epoch_loader(ds, cfg, epoch, rt)]

    first, again, other = batches(1), batches(1), batches(2)
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def _inductor_compiles() -> bool:
    """Can torch.compile build a trivial CPU function here (a C++ toolchain for inductor)?"""
    try:
        return bool(torch.compile(lambda x: x * 2 + 1)(torch.ones(3)).eq(3).all())
    except Exception:  # the toolchain, not tgs: checked on a function that is not tgs's
        return False


@pytest.mark.slow  # trains or spawns processes
@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile not available")
def test_compile_trains_the_same_model(data, folds, tmp_path):
    """One training step, compiled and eager, gives the same weights. In fp32 with plain SGD: the
    step is lr x gradient, so kernel-order noise in the gradient (~1e-6) stays that small (Adam's
    first step is ~lr x sign(gradient), which flips for a gradient near zero; bf16 autocast, on
    CPUs that have it, rounds the two kernels differently)."""
    same = [*TINY, "max_train_batches=1", "optimizer=sgd", "amp=false", "lr=0.01"]
    cfg = load_config(None, [*same, "compile=true"])
    if not _inductor_compiles():
        pytest.skip("torch.compile's CPU backend cannot build here (no working C++ compiler)")
    t = _trainer(cfg, data, folds, tmp_path)
    before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.run_epoch(0)  # any failure here is the feature's: compile itself works on this machine
    assert type(t.train_model).__name__ == "OptimizedModule"
    eager = _trainer(load_config(None, same), data, folds, tmp_path, "e")
    assert all(torch.equal(p, before[n]) for n, p in eager.model.named_parameters())
    eager.run_epoch(0)
    moved = [n for n, p in t.model.named_parameters() if not torch.equal(p, before[n])]
    assert len(moved) > len(before) // 2  # the compiled step trained
    for (n, a), (_, b) in zip(
        t.model.state_dict().items(), eager.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-5, rtol=1e-4, msg=n)


def test_renamed_key_maps_with_a_warning(tmp_path, monkeypatch, caplog):
    from tgs.core import config

    monkeypatch.setitem(config.RENAMED, "max_epochs", ("epochs", int))
    path = tmp_path / "old.yaml"
    path.write_text("max_epochs: 7\n")
    with caplog.at_level(logging.WARNING, logger="tgs"):
        assert load_config(path).epochs == 7
        assert config.config_from_dict({"max_epochs": "3"}).epochs == 3
    assert "'max_epochs' is now 'epochs'" in caplog.text


def test_val_every_validates_less_but_at_each_stage_end(data, folds, tmp_path, monkeypatch):
    cfg = load_config(None, [*TINY, "epochs=5", "val_every=2", "stage2_epochs=1"])
    calls = []
    real = FoldTrainer.val_score
    monkeypatch.setattr(FoldTrainer, "val_score", lambda self: calls.append(1) or real(self))
    summary = train_fold(Run(tmp_path / "v").create(cfg), cfg, data, folds, 0)
    log = pd.read_csv(Run(tmp_path / "v").fold(0).log)
    validated = log["val_score"].notna().tolist()
    assert validated == [False, True, False, True, True, True]  # 2, 4, end of stage 1, of run
    assert len(calls) == 4
    # the best epoch is the first of the highest validated scores, and best.pt holds it
    assert summary.best_epoch == int(log["val_score"].idxmax()) + 1
    best = read_checkpoint(Run(tmp_path / "v").fold(0).best)
    assert best["epoch"] + 1 == summary.best_epoch and best["score"] == log["val_score"].max()
