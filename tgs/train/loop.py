"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from tgs.core.config import Config
from tgs.core.errors import TGSError
from tgs.data.dataset import SaltDataset
from tgs.models.geometry import Geometry
from tgs.predict.inference import Runtime


class Criterion(nn.Module):
    """Mask loss on logits (N, 1, H, W) + cls_weight * BCE of the salt-present logit (N,)
    + aux_weight * the mean over auxiliary (deep supervision) logits of the mask loss on the
    images with salt only (the empty/non-empty decision is left to the main mask and the head)."""

    def __init__(self, mask_loss: nn.Module, cls_weight: float = 0.0, aux_weight: float = 0.0):
        super().__init__()
        self.mask_loss, self.cls_weight, self.aux_weight = mask_loss, cls_weight, aux_weight

    @property
    def wants_aux(self) -> bool:
        return self.aux_weight > 0

    def forward(
        self,
        mask: torch.Tensor,
        cls: torch.Tensor | None,
        y: torch.Tensor,
        aux: list[torch.Tensor] | None = None,
    ):
        loss = self.mask_loss(mask.float(), y)
        present = y.flatten(1).amax(dim=1)
        if cls is not None and self.cls_weight > 0:
            loss = loss + self.cls_weight * F.binary_cross_entropy_with_logits(cls.float(), present)
        salt = present > 0
        if aux and self.aux_weight > 0 and salt.any():
            parts = [self.mask_loss(a[salt].float(), y[salt]) for a in aux]
            loss = loss + self.aux_weight * torch.stack(parts).mean()
        return loss


def train_one_epoch(
    model, loader, criterion, opt, scaler, *, rt: Runtime, desc: str, on_step=None, quiet=False
) -> float:
    """One pass over `loader`; returns the mean loss. Raises TGSError on a non-finite loss.

    on_step: called after every optimizer step (e.g. to update an EMA of the weights)."""
    model.train()
    total, n = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, mininterval=1.0, disable=quiet)
    for x, y in bar:
        x, y = rt.to_input(x), y.to(rt.device, non_blocking=True)
        with rt.autocast():
            if criterion.wants_aux:
                mask, cls, aux = model(x, with_cls=True, with_aux=True)
                loss = criterion(mask, cls, y, aux)
            else:
                loss = criterion(*model(x, with_cls=True), y)
        if not torch.isfinite(loss):
            raise TGSError(
                f"{desc}: loss became {loss.item()} (lower lr?); last good checkpoint kept"
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if on_step is not None:
            on_step()
        total += loss.item() * len(x)
        n += len(x)
        bar.set_postfix(loss=f"{total / n:.4f}", refresh=False)
    return total / max(n, 1)


def _seed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own deterministic augmentation stream."""
    info = torch.utils.data.get_worker_info()
    aug = getattr(info.dataset, "augment", None)
    if aug is not None:
        aug.set_random_seed(torch.initial_seed() % 2**31)


def epoch_loader(ds: SaltDataset, cfg: Config, epoch: int, rt: Runtime, d=None) -> DataLoader:
    """A loader whose order and augmentation depend only on (seed, epoch): resumable.

    Distributed (`d.enabled`): a DistributedSampler with set_epoch gives each rank a disjoint
    shard; each rank's augmentation stream is seeded by (seed, epoch, rank)."""
    seed = cfg.seed * 1000 + epoch
    sampler = None
    if d is not None and d.enabled:
        # drop_last: no padding duplicates, so ranks see disjoint samples (a shuffled few rest)
        sampler = DistributedSampler(
            ds, d.world, d.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        seed = seed * 100 + d.rank
    if ds.augment is not None:
        ds.augment.set_random_seed(seed)
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(ds) > cfg.batch_size * (d.world if d is not None else 1),
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=_seed_worker,
        pin_memory=rt.device.type == "cuda",
        persistent_workers=False,
    )


def fold_indices(ids: list[str], folds, fold: int) -> tuple[np.ndarray, np.ndarray]:
    fold_of = folds.set_index("id").loc[ids, "fold"].to_numpy()
    train_idx, val_idx = (
        np.flatnonzero(fold_of != fold),
        np.flatnonzero(fold_of == fold),
    )
    if not len(val_idx) or not len(train_idx):
        raise TGSError(f"fold {fold} is empty or holds everything (folds: {sorted(set(fold_of))})")
    return train_idx, val_idx


def take(loader, n: int):
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch


@contextmanager
def train_size(model: torch.nn.Module, size: int):
    """Progressive resizing: inside, `model` (a SegModel) resizes its inputs to `size` x `size`
    (and its logits back to 101); size 0 leaves it as built. Restored on exit, so validation,
    the EMA copy and checkpoints always use the run's geometry."""
    if not size:
        yield model
        return
    full = model.geometry
    model.geometry = Geometry("resize", size)
    try:
        yield model
    finally:
        model.geometry = full
