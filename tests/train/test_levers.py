"""Budget levers: deep supervision and progressive resizing change training the way they claim,
and leave validation, checkpoints and inference at the run's geometry."""

from dataclasses import replace

import pytest
import torch

from tests.helpers import TINY_ARGS, fold_trainer
from tgs.budget.plan import plan_epochs
from tgs.core.config import load_config
from tgs.core.errors import ConfigError, TGSError
from tgs.models.geometry import Geometry
from tgs.models.losses import create_loss
from tgs.models.registry import create_model
from tgs.run.records import Measured
from tgs.train.loop import Criterion, train_size
from tgs.train.schedule import low_epochs
from tgs.train.validate import validate_config

TINY = TINY_ARGS  # epochs=1 unless a test sets more


def _target() -> torch.Tensor:
    y = torch.zeros(4, 1, 101, 101)
    y[0, :, 20:60, 20:60] = 1  # images 0 and 1 hold salt, 2 and 3 are empty
    y[1, :, 50:, :] = 1
    return y


def test_deep_supervision_heads_train_only_and_leave_eval_outputs_unchanged():
    torch.manual_seed(0)
    plain = create_model("seed_unet", geometry="resize", size=64, n_filters=4, cls_head=True)
    deep = create_model(
        "seed_unet", geometry="resize", size=64, n_filters=4, cls_head=True, deep_supervision=True
    )
    missing = deep.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("net.aux_heads.") for k in missing)
    x = torch.randn(2, 1, 101, 101)
    plain.eval(), deep.eval()
    for a, b in zip(plain(x, with_cls=True), deep(x, with_cls=True), strict=True):
        assert torch.equal(a, b)  # the heads add nothing at inference
    assert deep(x, with_cls=True, with_aux=True)[2] == []
    deep.train()
    mask, cls, aux = deep(x, with_cls=True, with_aux=True)
    assert len(aux) == 3 and all(a.shape == (2, 1, 101, 101) for a in aux)  # 3 coarser scales
    assert cls.shape == (2,)
    with pytest.raises(ConfigError, match="seed_unet"):
        create_model("unet", encoder="resnet18", deep_supervision=True)


def test_auxiliary_loss_sees_salt_images_only_and_is_weighted():
    torch.manual_seed(0)
    y = _target()
    mask, cls = torch.randn(4, 1, 101, 101), torch.randn(4)
    aux = [torch.randn(4, 1, 101, 101) for _ in range(3)]
    loss = create_loss("bce+dice")
    base = Criterion(loss, 0.2)(mask, cls, y)
    deep = Criterion(loss, 0.2, aux_weight=0.5)
    expected = torch.stack([loss(a[:2], y[:2]) for a in aux]).mean()
    assert torch.allclose(deep(mask, cls, y, aux), base + 0.5 * expected)
    # changing the auxiliary logits of the empty images changes nothing
    noisy = [a.clone() for a in aux]
    for a in noisy:
        a[2:] = 50.0
    assert torch.allclose(deep(mask, cls, y, noisy), deep(mask, cls, y, aux))
    empty = torch.zeros_like(y)  # a batch without salt: no auxiliary term at all
    assert torch.allclose(deep(mask, cls, empty, aux), Criterion(loss, 0.2)(mask, cls, empty))


def test_train_size_swaps_geometry_and_always_restores_it():
    model = create_model("seed_unet", geometry="pad", size=128, n_filters=4)
    full = model.geometry
    seen = []
    hook = model.net.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1]))
    with train_size(model, 64):
        assert model(torch.randn(1, 1, 101, 101)).shape[-1] == 101
    with pytest.raises(RuntimeError), train_size(model, 32):
        raise RuntimeError("boom")
    with train_size(model, 0):
        model(torch.randn(1, 1, 101, 101))
    hook.remove()
    assert seen == [64, 128] and model.geometry is full


def test_progressive_resizing_trains_low_first_then_full_and_validates_full(tmp_path, data, folds):
    cfg = load_config(None, [*TINY, "epochs=4", "low_size=16", "low_share=0.5", "ema=0.9"])
    validate_config(cfg)
    assert low_epochs(cfg) == 2
    t = fold_trainer(cfg, data, folds, tmp_path / "run")
    sizes: list[tuple[bool, int]] = []

    def record(module, args):
        sizes.append((module.training, args[0].shape[-1]))

    hooks = [m.net.register_forward_pre_hook(record) for m in (t.model, t.eval_model)]
    t.fit()
    for h in hooks:
        h.remove()
    train = [s for training, s in sizes if training]
    per_epoch = len(train) // 4
    assert train == [16] * 2 * per_epoch + [32] * 2 * per_epoch
    assert {s for training, s in sizes if not training} == {32}  # validation and OOF at full
    assert t.model.geometry.size == 32 and t.eval_model.geometry.size == 32


def test_plan_prices_progressive_epochs_by_their_measured_steps():
    measured = Measured(step_seconds=1.0, val_seconds=4.0, n_val=200, steps_per_epoch=20)
    full = load_config(None, ["epochs=40", "budget_minutes=30", "size=128"])
    prog = load_config(None, ["epochs=40", "budget_minutes=30", "low_size=64", "low_share=0.75"])
    low = replace(measured, low_step_seconds=0.4)
    plan = plan_epochs(prog, low, 1800.0, waves=1, n_test=0)
    assert plan.epoch_seconds == pytest.approx(20 * (0.75 * 0.4 + 0.25 * 1.0) + 4.0)
    assert plan.epochs > plan_epochs(full, measured, 1800.0, waves=1, n_test=0).epochs


def test_lever_settings_are_checked():
    for bad, message in (
        (["low_size=8"], r"low_size >= 16 .*\(got 8, 0.75\)"),
        (["low_size=64", "low_share=0"], r"0 < low_share <= 1 \(got 64, 0.0\)"),
        (["aux_weight=-1"], "aux_weight must be >= 0, got -1"),
    ):
        with pytest.raises(TGSError, match=message):
            validate_config(load_config(None, [*TINY, *bad]))
    with pytest.raises(ConfigError, match="unknown gate 'max'.*head, mask_max, mean"):
        validate_config(load_config(None, [*TINY, "gate=max"]))
    with pytest.raises(TGSError, match="cls_weight > 0"):
        validate_config(load_config(None, [*TINY, "gate=mean", "cls_weight=0"]))
    validate_config(load_config(None, [*TINY, "gate=mean", "cls_weight=0.2"]))
    validate_config(load_config(None, [*TINY, "gate=mask_max", "cls_weight=0"]))
    with pytest.raises(ConfigError, match="seed_unet"):
        validate_config(load_config(None, ["model=unet", "encoder=resnet18", "aux_weight=0.1"]))
    assert Geometry("resize", 16).model_size == 16
