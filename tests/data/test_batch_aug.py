"""Batch-level on-device augmentation and the data_on_device training path."""

import pytest
import torch

from tests.helpers import TINY_ARGS
from tgs.core.config import load_config
from tgs.data.batch_aug import DeviceBatches, batch_augment
from tgs.data.folds import make_folds
from tgs.data.io import load_train
from tgs.pipeline.stages import train_fold
from tgs.run.folder import Run


def test_flip_moves_image_and_mask_together():
    x = torch.rand(8, 2, 101, 101)
    y = (x[:, :1] > 0.5).float()
    g = torch.Generator().manual_seed(0)
    ax, ay = batch_augment(x, y, g, hflip=1.0, affine=0.0, brightness_contrast=0.0)
    assert torch.equal(ax, x.flip(-1)) and torch.equal(ay, y.flip(-1))
    ax, ay = batch_augment(x, y, g, hflip=0.0, affine=0.0, brightness_contrast=0.0)
    assert torch.equal(ax, x) and torch.equal(ay, y)


def test_affine_keeps_masks_binary_and_extra_planes_untouched():
    x = torch.rand(8, 3, 101, 101)
    x[:, 2] = torch.linspace(-1, 1, 101).view(101, 1)  # a row ramp
    y = torch.zeros(8, 1, 101, 101)
    y[:, :, 30:70, 30:70] = 1
    g = torch.Generator().manual_seed(1)
    ax, ay = batch_augment(x, y, g, hflip=0.0, affine=1.0, brightness_contrast=1.0)
    assert set(torch.unique(ay).tolist()) <= {0.0, 1.0}
    assert not torch.equal(ay, y)  # warped
    assert torch.equal(ax[:, 1:], x[:, 1:])  # depth/ramp planes are not warped or recoloured
    assert not torch.equal(ax[:, 0], x[:, 0])


@pytest.mark.slow  # trains or spawns processes
def test_data_on_device_path_trains(synth_dir, tmp_path, monkeypatch):
    data = load_train(synth_dir)
    folds = make_folds(data.ids, data.masks, data.z, 2, 0)
    cfg = load_config(
        None,
        [*TINY_ARGS, "batch_size=8", "epochs=2", "data_on_device=true"],
    )

    used = []
    real_epoch = DeviceBatches.epoch

    def no_loader(*a, **k):
        raise AssertionError("data_on_device must not build a per-sample DataLoader")

    def recorded(self, seed):
        used.append(seed)
        return real_epoch(self, seed)

    import tgs.train.data

    monkeypatch.setattr(tgs.train.data, "epoch_loader", no_loader)
    monkeypatch.setattr(DeviceBatches, "epoch", recorded)
    summary = train_fold(Run(tmp_path / "r").create(cfg), cfg, data, folds, 0)
    assert used == [42000, 42001]  # one on-device epoch per epoch, seeded by (seed, epoch)
    assert summary.n_val == 30 and (tmp_path / "r" / "fold0" / "oof.npz").is_file()
