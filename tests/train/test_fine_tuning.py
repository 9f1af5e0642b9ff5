"""Fine-tuning a pretrained encoder: its own learning rate, frozen first epochs (planned into a
budget at their own cost), the decoder's width, and the settings that would do nothing."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import fold_trainer
from tgs.budget.plan import plan_epochs, replan
from tgs.budget.refit import refit_due
from tgs.core.config import load_config
from tgs.core.errors import ConfigError
from tgs.models.registry import encoder_of
from tgs.resources import shipped_configs
from tgs.run.records import Measured, Plan
from tgs.train.schedule import build_optimizer, build_scheduler
from tgs.train.validate import no_effect, validate_config

LITE = [
    "model=unet",
    "encoder=tu-tf_efficientnet_lite0",
    "encoder_weights=imagenet",
    "decoder_channels=[32,16,16,8,8]",
    "geometry=resize",
    "size=32",
    "batch_size=16",
    "max_train_batches=2",
    "threads=1",
    "amp=false",
]


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_encoder_learns_at_its_multiple_of_the_rate_through_the_schedule():
    cfg = load_config(None, [*LITE, "encoder_lr_mult=0.1", "lr=0.002", "min_lr=0", "epochs=4"])
    from tgs.models.registry import model_from_config

    model = model_from_config(cfg, pretrained=False)
    opt = build_optimizer(cfg, model)
    encoder = {id(p) for p in encoder_of(model).parameters()}
    rates = {
        (all(id(p) in encoder for p in g["params"]), g["weight_decay"] > 0): g["lr"]
        for g in opt.param_groups
    }
    assert rates == {
        (False, False): 0.002,
        (False, True): 0.002,
        (True, False): 2e-4,
        (True, True): 2e-4,
    }
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    sched = build_scheduler(cfg, opt, steps=10)
    sched.step_update(20)  # half way down the cosine: both rates halved, still 10:1
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == pytest.approx([1e-4, 1e-3])


def test_without_a_multiplier_the_groups_are_timms(data, folds, tmp_path):
    """encoder_lr_mult 1 (the default) keeps timm's two groups: the same optimizer as before."""
    from timm.optim import create_optimizer_v2

    from tgs.models.registry import model_from_config

    cfg = load_config(None, LITE)
    model = model_from_config(cfg, pretrained=False)
    ours = build_optimizer(cfg, model).param_groups
    timms = create_optimizer_v2(
        model, "adamw", lr=cfg.lr, weight_decay=cfg.weight_decay
    ).param_groups
    assert [[id(p) for p in g["params"]] for g in ours] == [
        [id(p) for p in g["params"]] for g in timms
    ]
    assert [g["weight_decay"] for g in ours] == [g["weight_decay"] for g in timms]


def test_a_frozen_encoder_keeps_its_weights_then_trains(data, folds, tmp_path):
    """Epoch 1 frozen: encoder weights unchanged (its BatchNorm statistics adapt), the decoder
    trains; epoch 2: the encoder trains too."""
    cfg = load_config(None, [*LITE, "freeze_encoder_epochs=1", "epochs=2", "lr=0.01"])
    t = fold_trainer(cfg, data, folds, tmp_path / "r")
    encoder = encoder_of(t.model)
    before, decoder = _weights(encoder), _weights(t.model.net.decoder)
    t.run_epoch(0)
    after = _weights(encoder)
    params = {n for n, _ in encoder.named_parameters()}
    assert all(torch.equal(after[n], before[n]) for n in params)
    stats = [n for n in after if n.endswith("running_mean")]
    assert any(not torch.equal(after[n], before[n]) for n in stats)
    assert any(not torch.equal(v, decoder[k]) for k, v in _weights(t.model.net.decoder).items())
    t.run_epoch(1)
    trained = _weights(encoder)
    assert sum(not torch.equal(trained[n], after[n]) for n in params) > len(params) // 2


def test_decoder_channels_reach_smp():
    from tgs.models.registry import model_from_config

    model = model_from_config(load_config(None, LITE), pretrained=False)
    convs = [m for m in model.net.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted({c.out_channels for c in convs}) == [8, 16, 32]


MEASURED = Measured(  # a trained epoch 12 s, a frozen one 7 s
    step_seconds=1.0, frozen_step_seconds=0.5, val_seconds=2.0, n_val=10, steps_per_epoch=10
)


def test_frozen_epochs_are_planned_at_their_own_cost():
    """600 s: 3 frozen epochs (7 s each) and as many 12 s epochs as fit 0.92 x the rest."""
    cfg = load_config(
        None, ["epochs=40", "budget_minutes=10", "freeze_encoder_epochs=3", "tta=none"]
    )
    plan = plan_epochs(cfg, MEASURED, 600.0, waves=1, n_test=0)
    assert plan.epochs == 3 + int((0.92 * plan.fold_seconds - 3 * 7) / 12)
    plain = load_config(None, ["epochs=40", "tta=none"])
    assert plan.epochs > plan_epochs(plain, MEASURED, 600.0, waves=1, n_test=0).epochs


def test_the_refit_times_epochs_that_train_the_encoder():
    cfg = load_config(None, ["epochs=40", "budget_minutes=10", "freeze_encoder_epochs=3"])
    assert not refit_due(cfg, [], 4) and refit_due(cfg, [], 5)  # 3 frozen + replan_after 2
    plan = Plan(measured=MEASURED, epoch_seconds=12.0, fold_seconds=600.0, epochs=40)
    # frozen epochs ran as probed (7 s), trained ones at 1.5x (18 s): the ratio is 1.5, not less
    new = replan(cfg, plan, [7.0, 7.0, 7.0, 18.0, 18.0])
    assert new.ratio == pytest.approx(1.5)


def test_fine_tuning_values_are_checked():
    with pytest.raises(ConfigError, match="freezes every epoch"):
        validate_config(load_config(None, [*LITE, "epochs=2", "freeze_encoder_epochs=2"]))
    with pytest.raises(ConfigError, match="config encoder_lr_mult must be >= 0, got -1"):
        validate_config(load_config(None, [*LITE, "encoder_lr_mult=-1"]))
    with pytest.raises(ConfigError, match="set input_mean and input_std together"):
        validate_config(load_config(None, [*LITE, "input_mean=0.5"]))


@pytest.mark.parametrize("name", shipped_configs())
def test_no_shipped_config_sets_what_does_nothing(name):
    assert no_effect(load_config(name)) == []


@pytest.mark.parametrize(
    "overrides, said",
    [
        (["gate=head"], "gate: head thresholds the classifier head, but cls_weight is 0"),
        (["encoder_lr_mult=0.5"], "encoder_lr_mult is an option of smp models, not seed_unet"),
        (["decoder_channels=[8,8,8,8,8]"], "decoder_channels is an option of smp models"),
        (["momentum=0.5"], "momentum is SGD's"),
        (["cycle_epochs=3"], "cycle_epochs: not cosine_restarts"),
        (["low_share=0.5"], "low_share needs low_size"),
        (["stage2_lr=0.1"], "stage2_lr needs stage2_epochs"),
        (["data_on_device=true", "num_workers=2"], "num_workers: data_on_device"),
        (["replan_after=3"], "replan_after refits a budget"),
        (["augment=false", "hflip=0.1"], "hflip: augment is false"),
    ],
)
def test_settings_that_would_do_nothing_are_named(overrides, said):
    found = no_effect(load_config(None, overrides))
    assert len(found) == 1 and said in found[0]
