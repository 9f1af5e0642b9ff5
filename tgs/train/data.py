"""What one fold trains on: its training images (plus a pseudo-labelled set) and the batches
made of them, epoch by epoch (a per-sample dataset with albumentations through a DataLoader, or
the whole set on the device augmented a batch at a time): either way `batches.epoch(epoch)`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tgs.core.config import Config
from tgs.core.errors import TGSError
from tgs.data.batch_aug import DeviceBatches
from tgs.data.cache import load_train_cached
from tgs.data.dataset import InputSpec, SaltDataset, build_augment
from tgs.data.io import TrainData, require_depths
from tgs.predict.inference import Runtime
from tgs.train.distributed import Dist
from tgs.train.loop import epoch_loader


def fold_train_set(
    data: TrainData, train_idx: np.ndarray, cfg: Config, spec: InputSpec
) -> TrainData:
    """The images `train_idx` of `data`, plus the pseudo-labelled set when `cfg.pseudo` is set
    (its ids must not be labelled ids: pseudo images never enter a validation fold)."""
    own = data.subset(train_idx)
    if not cfg.pseudo:
        return own
    extra = load_train_cached(cfg.pseudo)
    clash = set(extra.ids) & set(data.ids)
    if clash:
        raise TGSError(f"pseudo set {cfg.pseudo} holds labelled id {sorted(clash)[0]!r}")
    if spec.depth:
        require_depths(extra.ids, extra.z, Path(cfg.pseudo) / "depths.csv")
    return TrainData(
        own.ids + extra.ids,
        np.concatenate([own.images, extra.images]),
        np.concatenate([own.masks, extra.masks]),
        np.concatenate([own.z, extra.z]),
    )


class FoldBatches(Protocol):
    """A fold's training batches, epoch by epoch: order and augmentation depend only on the
    config's seed and `epoch`, so a resumed fold draws what an uninterrupted one would."""

    def epoch(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class LoaderBatches:
    """A per-sample dataset (albumentations) through a DataLoader (`epoch_loader`)."""

    dataset: SaltDataset
    cfg: Config
    rt: Runtime
    dist: Dist

    def epoch(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return epoch_loader(self.dataset, self.cfg, epoch, self.rt, self.dist)


@dataclass
class DeviceEpochs:
    """The whole set on the device, augmented a batch at a time (`DeviceBatches`), each epoch
    seeded by (seed, epoch)."""

    batches: DeviceBatches
    seed: int

    def epoch(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches.epoch(self.seed * 1000 + epoch)


def train_batches(
    cfg: Config, data: TrainData, spec: InputSpec, rt: Runtime, dist: Dist
) -> FoldBatches:
    """Per-sample dataset (albumentations, DataLoader) or, with `data_on_device`, the whole set
    on the device augmented a batch at a time."""
    if cfg.data_on_device:
        device = rt.device
        x = spec.make(data.images, data.z).to(device)
        y = torch.from_numpy(data.masks).float().unsqueeze(1).to(device)
        aug = dict(
            hflip=cfg.hflip,
            affine=cfg.affine,
            brightness_contrast=cfg.brightness_contrast,
            std=spec.std,
        )
        augment = aug if cfg.augment else None
        batches = DeviceBatches(x, y, cfg.batch_size, augment, rank=dist.rank, world=dist.world)
        return DeviceEpochs(batches, cfg.seed)
    aug = build_augment(cfg.hflip, cfg.affine, cfg.brightness_contrast) if cfg.augment else None
    return LoaderBatches(SaltDataset(data.images, data.masks, aug, data.z, spec), cfg, rt, dist)
