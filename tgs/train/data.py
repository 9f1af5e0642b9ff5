"""What one fold trains on: its training images (plus a pseudo-labelled set) and the batches
made of them (a per-sample dataset with albumentations, or the whole set on the device)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tgs.core.config import Config
from tgs.core.errors import TGSError
from tgs.data.batch_aug import DeviceBatches
from tgs.data.cache import load_train_cached
from tgs.data.dataset import InputSpec, SaltDataset, build_augment
from tgs.data.io import TrainData, require_depths
from tgs.train.distributed import Dist


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


def train_batches(
    cfg: Config, data: TrainData, spec: InputSpec, device: torch.device, dist: Dist
) -> SaltDataset | DeviceBatches:
    """Per-sample dataset (albumentations, DataLoader) or, with `data_on_device`, the whole set
    on `device` augmented a batch at a time."""
    if cfg.data_on_device:
        x = spec.make(data.images, data.z).to(device)
        y = torch.from_numpy(data.masks).float().unsqueeze(1).to(device)
        aug = dict(
            hflip=cfg.hflip,
            affine=cfg.affine,
            brightness_contrast=cfg.brightness_contrast,
            std=spec.std,
        )
        return DeviceBatches(
            x, y, cfg.batch_size, aug if cfg.augment else None, dist.rank, dist.world
        )
    aug = build_augment(cfg.hflip, cfg.affine, cfg.brightness_contrast) if cfg.augment else None
    return SaltDataset(data.images, data.masks, aug, data.z, spec)
