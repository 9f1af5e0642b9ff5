"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

import math
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tgs.checkpoint import read_checkpoint, save_checkpoint
from tgs.config import Config, dump_config
from tgs.data.dataset import SaltDataset, build_augment, normalize
from tgs.data.io import TrainData
from tgs.errors import TGSError
from tgs.fileio import atomic_path, write_json, write_text
from tgs.losses import create_loss
from tgs.metric import competition_score
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


def git_commit() -> str:
    """Commit of the tgs source tree, or "unknown" outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
    raise TGSError(f"unknown optimizer {cfg.optimizer!r} (valid: adamw, sgd)")


def build_scheduler(cfg: Config, opt: torch.optim.Optimizer):
    """Stepped once per epoch (plateau: with the validation score)."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs, eta_min=cfg.min_lr)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=0.5, patience=3, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "none":
        return None
    raise TGSError(f"unknown scheduler {cfg.scheduler!r} (valid: cosine, plateau, none)")


@dataclass
class Runtime:
    """Device-dependent settings resolved from a config."""

    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format

    @classmethod
    def from_config(cls, cfg: Config) -> Runtime:
        device = resolve_device(cfg.device)
        amp = None
        if cfg.amp and device.type == "cuda":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
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
) -> np.ndarray:
    """uint8 images (N, 101, 101) -> float32 probabilities (N, 101, 101)."""
    model.eval()
    out = np.empty(images.shape, dtype=np.float32)
    for s in range(0, len(images), batch_size):
        x = rt.to_input(normalize(images[s : s + batch_size]))
        with rt.autocast():
            out[s : s + batch_size] = predict_proba(model, x, tta).cpu().numpy()
    return out


def train_one_epoch(model, loader, loss_fn, opt, scaler, rt: Runtime, desc: str) -> float:
    """One pass over `loader`; returns the mean loss. Raises TGSError on a non-finite loss."""
    model.train()
    total, n = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, mininterval=1.0)
    for x, y in bar:
        x, y = rt.to_input(x), y.to(rt.device, non_blocking=True)
        with rt.autocast():
            loss = loss_fn(model(x).float(), y)
        if not torch.isfinite(loss):
            raise TGSError(
                f"{desc}: loss became {loss.item()} (lower lr?); last good checkpoint kept"
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
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


def _epoch_loader(ds: SaltDataset, cfg: Config, epoch: int, rt: Runtime) -> DataLoader:
    """A loader whose order and augmentation depend only on (seed, epoch): resumable."""
    seed = cfg.seed * 1000 + epoch
    if ds.augment is not None:
        ds.augment.set_random_seed(seed)
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(ds) > cfg.batch_size,
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


def save_oof(path: Path, ids: list[str], probs: np.ndarray) -> None:
    """OOF probabilities as float16 (N, 101, 101) with their ids, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, ids=np.array(ids), probs=probs.astype(np.float16))


def fold_indices(ids: list[str], folds, fold: int) -> tuple[np.ndarray, np.ndarray]:
    fold_of = folds.set_index("id").loc[ids, "fold"].to_numpy()
    train_idx, val_idx = (
        np.flatnonzero(fold_of != fold),
        np.flatnonzero(fold_of == fold),
    )
    if not len(val_idx) or not len(train_idx):
        raise TGSError(f"fold {fold} is empty or holds everything (folds: {sorted(set(fold_of))})")
    return train_idx, val_idx


def fit(
    cfg: Config, data: TrainData, folds, fold: int, run_dir: Path, resume: bool = False
) -> dict:
    """Train fold `fold` of `folds` (DataFrame id, fold) into RUN/fold{k}; returns its summary.

    Writes best.pt (by validation score at p > 0.5), last.pt (full training state, every epoch),
    log.csv (per epoch), oof.npz (best model, hflip TTA, float16) and summary.json.
    """
    fold_dir = run_dir / f"fold{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    rt = Runtime.from_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed + fold)
    train_idx, val_idx = fold_indices(data.ids, folds, fold)
    model = model_from_config(cfg).to(rt.device, memory_format=rt.memory_format)
    loss_fn = create_loss(cfg.loss).to(rt.device)
    opt, sched = build_optimizer(cfg, model), None
    sched = build_scheduler(cfg, opt)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    aug = build_augment(cfg.hflip, cfg.affine, cfg.brightness_contrast) if cfg.augment else None
    ds = SaltDataset(data.images[train_idx], data.masks[train_idx], aug)
    val_images, val_masks = data.images[val_idx], data.masks[val_idx]
    start, best, history = 0, -math.inf, []
    last_path, best_path = fold_dir / "last.pt", fold_dir / "best.pt"
    if resume and last_path.exists():
        state = read_checkpoint(last_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        start, best, history = state["epoch"] + 1, state["best_score"], state["history"]
        print(f"fold {fold}: resuming after epoch {start} of {cfg.epochs}")
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        loader = _epoch_loader(ds, cfg, epoch, rt)
        if cfg.max_train_batches:
            loader = _take(loader, cfg.max_train_batches)
        desc = f"fold {fold} epoch {epoch + 1}/{cfg.epochs}"
        loss = train_one_epoch(model, loader, loss_fn, opt, scaler, rt, desc)
        probs = predict_array(model, val_images, rt, cfg.val_batch_size, tta="none")
        score = competition_score(probs > 0.5, val_masks)
        lr = opt.param_groups[0]["lr"]
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(score)
        elif sched is not None:
            sched.step()
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss,
                "val_score": score,
                "lr": lr,
                "seconds": time.time() - t0,
            }
        )
        improved = score > best
        best = max(best, score)
        state = {
            "model": model.state_dict(),
            "config": cfg.to_dict(),
            "epoch": epoch,
            "score": score,
            "fold": fold,
        }
        if improved:
            save_checkpoint(best_path, state)
        save_checkpoint(
            last_path,
            {
                **state,
                "best_score": best,
                "history": history,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "scaler": scaler.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
            },
        )
        _write_log(fold_dir / "log.csv", history)
        mark = " *" if improved else ""
        print(
            f"{desc}: loss {loss:.4f} val {score:.4f} best {best:.4f} lr {lr:.2e} "
            f"{time.time() - t0:.1f}s{mark}",
            flush=True,
        )
    return finish_fold(cfg, model, data, val_idx, fold_dir, rt, history)


def _take(loader, n: int):
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch


def _write_log(path: Path, history: list[dict]) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def finish_fold(cfg, model, data, val_idx, fold_dir: Path, rt: Runtime, history) -> dict:
    """Reload the best checkpoint, write the fold's hflip-TTA OOF and summary.json."""
    if not history:
        raise TGSError(f"{fold_dir}: no epoch was trained (epochs={cfg.epochs})")
    best_state = read_checkpoint(fold_dir / "best.pt")
    model.load_state_dict(best_state["model"])
    probs = predict_array(model, data.images[val_idx], rt, cfg.val_batch_size, tta="hflip")
    ids = [data.ids[i] for i in val_idx]
    save_oof(fold_dir / "oof.npz", ids, probs)
    summary = {
        "fold": int(best_state["fold"]),
        "best_epoch": int(best_state["epoch"]) + 1,
        "best_val_score": float(best_state["score"]),
        "oof_score_hflip_0.5": competition_score(probs > 0.5, data.masks[val_idx]),
        "n_train": int(len(data.ids) - len(val_idx)),
        "n_val": int(len(val_idx)),
        "train_seconds": float(sum(h["seconds"] for h in history)),
    }
    write_json(fold_dir / "summary.json", summary)
    return summary
