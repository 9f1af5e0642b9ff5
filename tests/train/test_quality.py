"""Winning-solution options: each changes the computation the way it claims."""

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import TINY_ARGS, fold_trainer
from tgs.core.config import load_config
from tgs.core.errors import ConfigError, DataError
from tgs.data.dataset import InputSpec
from tgs.models.checkpoint import load_model, read_checkpoint
from tgs.models.losses import create_loss
from tgs.models.registry import create_model
from tgs.post.metric import competition_score
from tgs.post.rule import gate_score, is_blank, postprocess
from tgs.post.search import search_grid
from tgs.predict.inference import Runtime, load_models, predict_array
from tgs.run.folder import Run
from tgs.run.records import Thresholds
from tgs.train.trainer import build_parts

TINY = TINY_ARGS


def trainer(cfg, data, folds, run, fold=0):
    return fold_trainer(cfg, data, folds, run, fold)


def test_lovasz_variants_differ_and_symmetric_helps_empty_masks():
    logits = torch.randn(2, 1, 101, 101, requires_grad=True)
    target = torch.zeros(2, 1, 101, 101)  # empty masks
    grads = {}
    for name in ("lovasz", "lovasz_elu", "lovasz_symmetric"):
        logits.grad = None
        create_loss(name)(logits, target).backward()
        grads[name] = logits.grad.clone()
    mixed = (torch.rand(2, 1, 101, 101) > 0.5).float()
    a, b = (create_loss(n)(logits, mixed) for n in ("lovasz", "lovasz_elu"))
    assert not torch.allclose(a, b)  # elu + 1 also weighs pixels with negative errors
    # plain hinge on an empty mask pushes down one pixel per image; symmetric, every pixel
    assert (grads["lovasz"] != 0).sum() <= 2
    assert (grads["lovasz_symmetric"] != 0).sum() > 1000


def test_batched_lovasz_equals_smp_per_image_loop_values_and_gradients():
    """`lovasz` (all images in one sort) against smp's LovaszLoss(per_image=True) (a loop):
    the same loss and gradient on masks with salt, empty and full, one-pixel, and 101 px."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    target = (torch.rand(6, 1, 101, 101) > 0.6).float()
    target[1], target[2] = 0, 1  # empty, full
    target[3] = 0
    target[3, 0, 50, 50] = 1  # one pixel
    logits = torch.randn(6, 1, 101, 101, requires_grad=True)
    grads = []
    for loss in (smp.losses.LovaszLoss("binary", per_image=True), create_loss("lovasz")):
        logits.grad = None
        value = loss(logits, target)
        value.backward()
        grads.append((value.detach(), logits.grad.clone()))
    (ref, ref_grad), (got, got_grad) = grads
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(got_grad, ref_grad, atol=1e-7)
    # per image, not over the batch: the mean of each image's loss alone
    per_image = [create_loss("lovasz")(logits[i : i + 1], target[i : i + 1]) for i in range(6)]
    assert torch.allclose(torch.stack(per_image).mean(), got)
    # bf16-rounded logits (as under autocast) tie many errors: the loss still equals smp's
    tied = logits.detach().bfloat16().float()
    ref = smp.losses.LovaszLoss("binary", per_image=True)(tied, target)
    assert torch.allclose(create_loss("lovasz")(tied, target), ref, atol=1e-6)


@pytest.mark.parametrize("name,kw", [("seed_unet", {}), ("unet", {"encoder": "resnet18"})])
def test_hypercolumn_alone_feeds_every_decoder_block_to_the_head(name, kw):
    torch.manual_seed(0)
    plain = create_model(name, **kw).eval()
    hyper = create_model(name, hypercolumn=True, **kw).eval()
    own = hyper.state_dict()
    prefix = "net." if name == "seed_unet" else "net.net."  # smp's net sits inside the wrapper
    shared = {prefix + k[4:]: v for k, v in plain.state_dict().items()}
    shared = {k: v for k, v in shared.items() if k in own and own[k].shape == v.shape}
    assert len(shared) >= len(own) - 2  # everything but the head
    hyper.load_state_dict(shared, strict=False)
    plain_head = plain.net.head if name == "seed_unet" else plain.net.segmentation_head[0]
    head = hyper.net.head
    c_last = plain_head.in_channels
    with torch.no_grad():  # only the last decoder block's channels, with the plain head's weights
        head.weight.zero_()
        head.weight[:, -c_last:] = plain_head.weight
        head.bias.copy_(plain_head.bias)
    x = torch.randn(2, 1, 101, 101)
    with torch.no_grad():
        torch.testing.assert_close(hyper(x), plain(x))  # the last block is in the hypercolumn
        head.weight[:, :-c_last] = 0.05  # the earlier blocks reach the head too
        assert not torch.allclose(hyper(x), plain(x), atol=1e-3)
    # no parameter is left without a gradient (smp's segmentation_head is gone)
    hyper.train()
    hyper(x).mean().backward()
    assert all(p.grad is not None for p in hyper.parameters())


def test_hypercolumn_elsewhere_is_a_config_error():
    for arch in ("unetplusplus", "fpn", "linknet"):
        with pytest.raises(ConfigError, match="hypercolumn is available for seed_unet, unet"):
            create_model(arch, encoder="resnet18", hypercolumn=True)


@pytest.mark.parametrize("name,kw", [("seed_unet", {}), ("unet", {"encoder": "resnet18"})])
def test_classifier_head_with_hypercolumn(name, kw):
    hyper = create_model(name, hypercolumn=True, cls_head=True, **kw)
    mask, cls = hyper.forward_all(torch.randn(3, 1, 101, 101))
    assert mask.shape == (3, 1, 101, 101) and cls.shape == (3,)
    assert create_model(name, **kw).forward_all(torch.randn(3, 1, 101, 101))[1] is None


def test_empty_gate_empties_mask_when_head_says_empty():
    probs = np.full((3, 101, 101), 0.9, np.float32)
    cls = np.array([0.05, 0.5, 0.95], np.float32)
    out = postprocess(probs, 0.5, 0, cls, empty_threshold=0.3)
    assert out[0].sum() == 0 and out[1].all() and out[2].all()
    assert postprocess(probs, 0.5, 0, cls, empty_threshold=0.0).all()


def test_search_finds_the_gate_when_the_head_is_right():
    masks = np.zeros((40, 101, 101), np.uint8)
    masks[::2, 20:60, 20:60] = 1
    probs = (masks * 0.8).astype(np.float32)
    probs[1::2, 0:40, 0:40] = 0.95  # false salt, more confident than the true salt
    cls = np.where(masks.reshape(40, -1).any(axis=1), 0.9, 0.1).astype(np.float32)
    res = search_grid(probs, masks, min_areas=[0], gate_scores=cls)
    assert res.score == 1.0 and 0.1 < res.empty_threshold <= 0.9
    assert search_grid(probs, masks, min_areas=[0]).score == 0.5  # without the head


def test_blank_rule():
    images = np.zeros((3, 101, 101), np.uint8)
    images[0] = 17  # constant
    images[1, 5, 5] = 3
    images[2] = np.arange(101, dtype=np.uint8)
    assert is_blank(images).tolist() == [True, False, False]
    probs = np.full((3, 101, 101), 0.9, np.float32)
    out = postprocess(probs, 0.5, blank=is_blank(images))
    assert out[0].sum() == 0 and out[1:].all()


def test_depth_and_ramp_channels(data, folds, tmp_path):
    spec = InputSpec(depth=True, ramp=True)
    x = spec.make(data.images[:4], np.array([100.0, 500.0, 900.0, 250.0]))
    assert x.shape == (4, 3, 101, 101)
    assert torch.allclose(x[1, 1], torch.zeros(101, 101))  # z=500 normalises to 0
    assert x[0, 2, 0, 0] == -1 and x[0, 2, -1, 0] == 1 and (x[0, 2, :, 0] == x[0, 2, :, 50]).all()
    cfg = load_config(None, [*TINY, "depth_channel=true", "ramp_channel=true"])
    t = trainer(cfg, data, folds, tmp_path / "r")
    assert t.model.net.downs[0][0].in_channels == 3
    broken = load_train_copy_without_depth(data)
    with pytest.raises(DataError, match="no depth for id"):
        build_parts(cfg, broken, folds, 0)


def load_train_copy_without_depth(data):
    from tgs.data.io import TrainData

    z = data.z.copy()
    z[3] = np.nan
    return TrainData(data.ids, data.images, data.masks, z)


def test_snapshot_ensemble_averages_cycle_snapshots(data, folds, tmp_path):
    cfg = load_config(
        None, [*TINY, "epochs=2", "scheduler=cosine_restarts", "cycle_epochs=1", "snapshots=true"]
    )
    t = trainer(cfg, data, folds, tmp_path / "snap")
    t.fit()
    files = Run(tmp_path / "snap").model_files(0)
    assert [f.name for f in files] == ["snapshot1.pt", "snapshot2.pt"]
    rt, vi = Runtime.from_config(cfg), t.val_idx
    preds = [predict_array(load_model(f)[0], data.images[vi], rt, 64, "hflip")[0] for f in files]
    with np.load(tmp_path / "snap" / "fold0" / "oof.npz") as z:
        oof = z["probs"].astype(np.float32)
    np.testing.assert_allclose(oof, (preds[0] + preds[1]) / 2, atol=1e-3)
    assert not np.allclose(preds[0], preds[1], atol=1e-3)


def test_ema_weights_are_what_is_saved(data, folds, tmp_path):
    cfg = load_config(None, [*TINY, "ema=0.9", "batch_size=8"])  # several steps: EMA != weights
    trainer(cfg, data, folds, tmp_path / "ema").fit()
    state = read_checkpoint(tmp_path / "ema" / "fold0" / "last.pt")
    key = "net.head.weight"
    assert not torch.equal(state["model"][key], state["train_model"][key])
    assert state["ema"] is not None


def test_staged_training_starts_from_stage_one(data, folds, tmp_path):
    stage1 = load_config(None, [*TINY, "name=s1"])
    trainer(stage1, data, folds, tmp_path / "s1").fit()
    stage2 = load_config(None, [*TINY, "name=s2", "loss=lovasz", f"init_from={tmp_path / 's1'}"])
    t2 = trainer(stage2, data, folds, tmp_path / "s2")
    best1 = read_checkpoint(tmp_path / "s1" / "fold0" / "best.pt")["model"]
    for k, v in t2.model.state_dict().items():
        assert torch.equal(v, best1[k]), k
    fresh = trainer(load_config(None, [*TINY, "name=s3"]), data, folds, tmp_path / "s3")
    assert not torch.equal(fresh.model.state_dict()["net.head.weight"], best1["net.head.weight"])


def test_stage2_in_one_run_switches_loss_and_lr_and_resumes_exactly(data, folds, tmp_path):
    over = [*TINY, "batch_size=8", "lr=0.002", "stage2_epochs=2", "stage2_lr=0.0005"]
    cfg = load_config(None, [*over, "stage2_loss=lovasz_symmetric"])
    t = trainer(cfg, data, folds, tmp_path / "st")
    assert repr(t.criterion.mask_loss) == "1*bce + 1*dice"
    t.fit()
    log = pd.read_csv(tmp_path / "st" / "fold0" / "log.csv")
    assert log["stage"].tolist() == [1, 2, 2]
    assert log["lr"].iloc[0] == pytest.approx(0.002) and log["lr"].iloc[1] == pytest.approx(5e-4)
    assert log["lr"].iloc[2] < 5e-4  # cosine over stage 2's own epochs
    assert repr(t.criterion.mask_loss) == "1*lovasz_symmetric"
    # interrupted inside stage 2, then resumed: same weights as the uninterrupted run
    part = trainer(cfg, data, folds, tmp_path / "part")
    part.run_epoch(0), part.run_epoch(1)
    resumed = trainer(cfg, data, folds, tmp_path / "part")
    resumed.fit(resume=True)
    assert resumed.stage == 2
    a = read_checkpoint(tmp_path / "st" / "fold0" / "last.pt")["train_model"]
    b = read_checkpoint(tmp_path / "part" / "fold0" / "last.pt")["train_model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_classifier_head_trains_and_gate_reaches_threshold_json(data, folds, tmp_path, synth_dir):
    from tgs.pipeline.stages import search_thresholds

    cfg = load_config(None, [*TINY, "cls_weight=0.5", "n_folds=2"])
    for k in (0, 1):
        trainer(cfg, data, folds, tmp_path / "cls", fold=k).fit()
    run = Run(tmp_path / "cls")
    ids, probs, cls, _ = run.load_oof()
    assert cls.shape == (60,)
    # the OOF's cls is the best checkpoint's hflip-averaged head output on the fold's ids
    t = trainer(cfg, data, folds, tmp_path / "cls-check")
    rt = Runtime.from_config(cfg)
    model = load_models([run.fold(0).best], rt)
    _, expect = predict_array(model, data.images[t.val_idx], rt, cfg.val_batch_size, "hflip")
    np.testing.assert_allclose(cls[:30], expect, rtol=0, atol=1e-6)
    out = search_thresholds(run, synth_dir)
    assert out.blank_rule is True
    # the recorded CV is the metric of the recorded post-processing, gate included
    rows = [data.ids.index(i) for i in ids]
    blank = is_blank(data.images[rows])
    masks = postprocess(probs, out.threshold, out.min_area, cls, out.empty_threshold, blank=blank)
    assert competition_score(masks, data.masks[rows]) == pytest.approx(out.cv, abs=1e-12)
    # another gate score, searched alone: recorded, and every gate of the grid scored with it
    mean = search_thresholds(run, synth_dir, gate="mean")
    assert mean.gate == run.thresholds().gate == "mean"
    t, a = mean.threshold, mean.min_area
    grid = np.load(run.paths.search)
    ti, ai = list(grid["thresholds"]).index(t), list(grid["min_areas"]).index(a)
    differ = False
    for k, g in enumerate(grid["empty_thresholds"]):
        by_mean = postprocess(probs, t, a, gate_score(probs, cls, "mean"), g, blank=blank)
        want = competition_score(by_mean, data.masks[rows])
        assert grid["grid"][ti, ai, k] == pytest.approx(want, abs=1e-6)
        differ |= want != competition_score(
            postprocess(probs, t, a, cls, g, blank=blank), data.masks[rows]
        )
    assert differ  # the head alone would have scored some gate differently


def test_predict_empties_by_the_recorded_gate_score(data, folds, tmp_path, synth_dir):
    """thresholds.json's `gate` decides what predict thresholds: a mask_max gate set where the
    mask max and the head disagree on the test set."""
    from tgs.predict.test_set import predict_batches

    cfg = load_config(None, [*TINY, "cls_weight=0.5", "n_folds=2", "folds=[0]"])
    trainer(cfg, data, folds, tmp_path / "g").fit()
    run = Run(tmp_path / "g")

    def predicted():
        parts = list(predict_batches(run, synth_dir, 16, "hflip", {}))
        return [np.concatenate([getattr(b, k) for b in parts]) for k in ("probs", "cls", "masks")]

    run.write(Thresholds(threshold=0.5, min_area=0, folds=[0], tta="hflip"))
    probs, cls, _ = predicted()
    peak = gate_score(probs, cls, "mask_max")
    cut = float(np.median(peak))
    assert ((peak < cut) != (cls < cut)).any()  # the two gates differ on these images
    seen = {"blank_rule": False, "folds": [0], "tta": "hflip"}
    th = Thresholds(threshold=0.0, min_area=0, gate="mask_max", empty_threshold=cut, **seen)
    run.write(th)
    _, _, masks = predicted()
    np.testing.assert_array_equal(masks.any(axis=(1, 2)), peak >= cut)
    old = Thresholds.from_dict({"threshold": 0.0, "min_area": 0, "empty_threshold": cut, **seen})
    run.write(old)  # a file from before `gate`: the head gates
    _, _, masks = predicted()
    np.testing.assert_array_equal(masks.any(axis=(1, 2)), cls >= cut)
