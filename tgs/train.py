"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tgs.config import Config, dump_config
from tgs.data.dataset import InputSpec, SaltDataset
from tgs.errors import TGSError
from tgs.fileio import atomic_path, write_json, write_text
from tgs.losses import create_loss
from tgs.models import model_from_config
from tgs.tta import predict_proba


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
    )


def git_commit() -> str:
    """Commit of the tgs source tree (with "-dirty" for uncommitted changes), or "unknown"."""
    try:
        head = _git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = _git("status", "--porcelain").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "cosine_restarts", "plateau", "none")


def validate_config(cfg: Config) -> None:
    """Resolve every name in `cfg` (model, encoder, loss, optimizer, ...) before any work."""
    if cfg.optimizer not in OPTIMIZERS:
        raise TGSError(f"unknown optimizer {cfg.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")
    if cfg.scheduler not in SCHEDULERS:
        raise TGSError(f"unknown scheduler {cfg.scheduler!r} (valid: {', '.join(SCHEDULERS)})")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise TGSError(f"epochs and batch_size must be >= 1 (got {cfg.epochs}, {cfg.batch_size})")
    if cfg.stage2_epochs < 0:
        raise TGSError(f"stage2_epochs must be >= 0, got {cfg.stage2_epochs}")
    if cfg.stage2_epochs and cfg.snapshots:
        raise TGSError("stage2_epochs and snapshots do not combine (snapshots are stage-1 cycles)")
    if cfg.stage2_epochs:
        create_loss(cfg.stage2_loss)
    if cfg.snapshots and cfg.scheduler != "cosine_restarts":
        raise TGSError("snapshots need scheduler: cosine_restarts (a snapshot per cycle)")
    if not 0 <= cfg.ema < 1:
        raise TGSError(f"ema is a decay in [0, 1), got {cfg.ema}")
    create_loss(cfg.loss)
    model_from_config(cfg)


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
    raise TGSError(f"unknown optimizer {cfg.optimizer!r} (valid: {', '.join(OPTIMIZERS)})")


def total_epochs(cfg: Config) -> int:
    """Epochs of the whole run: stage 1 (`epochs`) + stage 2 (`stage2_epochs`)."""
    return cfg.epochs + cfg.stage2_epochs


def stage2_config(cfg: Config) -> Config:
    """The optimisation settings of stage 2: its loss and lr, cosine over its epochs."""
    return replace(
        cfg, loss=cfg.stage2_loss, lr=cfg.stage2_lr, epochs=cfg.stage2_epochs, scheduler="cosine"
    )


def cycle_epochs(cfg: Config) -> int:
    """Length of one warm-restart cycle (cosine_restarts); the whole run otherwise."""
    return (
        cfg.cycle_epochs if cfg.scheduler == "cosine_restarts" and cfg.cycle_epochs else cfg.epochs
    )


def build_scheduler(cfg: Config, opt: torch.optim.Optimizer):
    """Stepped once per epoch (plateau: with the validation score)."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs, eta_min=cfg.min_lr)
    if cfg.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=cycle_epochs(cfg), eta_min=cfg.min_lr
        )
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=3, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "none":
        return None
    raise TGSError(f"unknown scheduler {cfg.scheduler!r} (valid: {', '.join(SCHEDULERS)})")


def cpu_native_bf16() -> bool:
    """True when this CPU runs bf16 matmuls/convolutions in hardware (AMX or AVX512-BF16), where
    bf16 autocast trains ~2.5x faster than fp32; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    native = any(getattr(cpu, name, lambda: False)() for name in probes)
    return native and torch.backends.mkldnn.is_available()


@dataclass
class Runtime:
    """Device-dependent settings resolved from a config."""

    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format

    @classmethod
    def from_config(cls, cfg: Config, local_rank: int | None = None) -> Runtime:
        device = resolve_device(cfg.device)
        if local_rank is not None and device.type == "cuda":
            device = torch.device("cuda", local_rank)
        amp = None
        if cfg.amp and device.type == "cuda":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cfg.amp and device.type == "cpu" and cpu_native_bf16():
            amp = torch.bfloat16
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        return cls(device, amp, fmt)

    def autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)


@torch.no_grad()
def predict_array(
    model: nn.Module,
    images: np.ndarray,
    rt: Runtime,
    batch_size: int = 64,
    tta: str = "hflip",
    z: np.ndarray | None = None,
    spec: InputSpec | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images (N, 101, 101) (+ depths z (N,)) -> (float32 pixel probabilities
    (N, 101, 101), salt-present probabilities (N,) or None without a classifier head)."""
    spec = spec or InputSpec()
    model.eval()
    out = np.empty(images.shape, dtype=np.float32)
    cls_out = np.empty(len(images), dtype=np.float32)
    has_cls = False
    for s in range(0, len(images), batch_size):
        zs = None if z is None else z[s : s + batch_size]
        x = rt.to_input(spec.make(images[s : s + batch_size], zs))
        with rt.autocast():
            probs, cls = predict_proba(model, x, tta)
        out[s : s + batch_size] = probs.cpu().numpy()
        if cls is not None:
            cls_out[s : s + batch_size], has_cls = cls.cpu().numpy(), True
    return out, cls_out if has_cls else None


class Criterion(nn.Module):
    """Mask loss on logits (N, 1, H, W) + cls_weight * BCE of the salt-present logit (N,)."""

    def __init__(self, mask_loss: nn.Module, cls_weight: float = 0.0):
        super().__init__()
        self.mask_loss, self.cls_weight = mask_loss, cls_weight

    def forward(self, mask: torch.Tensor, cls: torch.Tensor | None, y: torch.Tensor):
        loss = self.mask_loss(mask.float(), y)
        if cls is not None and self.cls_weight > 0:
            present = y.flatten(1).amax(dim=1)
            loss = loss + self.cls_weight * F.binary_cross_entropy_with_logits(cls.float(), present)
        return loss


def train_one_epoch(
    model, loader, criterion, opt, scaler, rt: Runtime, desc: str, on_step=None, quiet=False
) -> float:
    """One pass over `loader`; returns the mean loss. Raises TGSError on a non-finite loss.

    on_step: called after every optimizer step (e.g. to update an EMA of the weights)."""
    model.train()
    total, n = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, mininterval=1.0, disable=quiet)
    for x, y in bar:
        x, y = rt.to_input(x), y.to(rt.device, non_blocking=True)
        with rt.autocast():
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
        from torch.utils.data.distributed import DistributedSampler

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


def prepare_run_dir(run_dir: Path, cfg: Config, extra: dict) -> None:
    """Create RUN with its resolved config.yaml and meta.json; refuse a run with another config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path, text = run_dir / "config.yaml", dump_config(cfg)
    if cfg_path.exists() and cfg_path.read_text() != text:
        raise TGSError(f"{run_dir} was made with another config ({cfg_path}); use a new --run")
    if not cfg_path.exists():
        write_text(cfg_path, text)
    write_json(run_dir / "meta.json", {"commit": git_commit(), **extra})


def save_oof(path: Path, ids: list[str], probs: np.ndarray, cls: np.ndarray | None = None) -> None:
    """OOF probabilities as float16 (N, 101, 101) with their ids (and salt-present
    probabilities (N,) from a classifier head), atomically."""
    extra = {} if cls is None else {"cls": cls.astype(np.float32)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, ids=np.array(ids), probs=probs.astype(np.float16), **extra)


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
