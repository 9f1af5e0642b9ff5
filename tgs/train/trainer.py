"""Train one fold: epochs with validation on the competition metric, checkpoints, OOF."""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from tgs.core.config import Config
from tgs.core.errors import TGSError
from tgs.core.fileio import atomic_path
from tgs.data.batch_aug import DeviceBatches
from tgs.data.dataset import InputSpec, SaltDataset, build_augment
from tgs.data.io import TrainData, require_depths
from tgs.models.checkpoint import read_checkpoint, save_checkpoint
from tgs.models.geometry import Geometry
from tgs.models.losses import create_loss
from tgs.models.registry import model_from_config
from tgs.post.metric import competition_score, per_image_scores
from tgs.predict.inference import Runtime, load_models, predict_array
from tgs.run.folder import Run
from tgs.train.distributed import Dist, barrier, gather_objects, mean_across, weights_identical
from tgs.train.loop import Criterion, epoch_loader, fold_indices, take, train_one_epoch
from tgs.train.schedule import (
    build_optimizer,
    build_scheduler,
    cycle_epochs,
    low_epochs,
    stage1_scheduler,
    stage2_config,
    steps_per_epoch,
    total_epochs,
)

log = logging.getLogger(__name__)


def wrap_ddp(model: torch.nn.Module, d, rt: Runtime) -> torch.nn.Module:
    """DistributedDataParallel around `model` when distributed (SyncBatchNorm only on CUDA;
    find_unused_parameters when a probe step leaves some parameter without a gradient)."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if rt.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=has_unused_parameters(model, rt))


def has_unused_parameters(model: torch.nn.Module, rt: Runtime) -> bool:
    """Run one eval-mode probe batch and report whether any parameter gets no gradient."""
    was_training = model.training
    model.eval()
    x = torch.randn(2, model_in_channels(model), 101, 101, device=rt.device)
    mask, cls = model(x, with_cls=True)
    (mask.mean() + (cls.mean() if cls is not None else 0)).backward()
    unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


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


def model_in_channels(model: torch.nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return first.in_channels


class FoldTrainer:
    """State of one fold's training; `fit()` runs it, `resume=True` continues from last.pt.

    The caller seeds the RNGs and joins the process group (`tgs.pipeline.train_fold`)."""

    def __init__(
        self,
        cfg: Config,
        data: TrainData,
        folds: pd.DataFrame,
        fold: int,
        run: Run,
        dist: Dist | None = None,
        started: float | None = None,
    ):
        """`started`: `time.time()` when the fold's work began (a child fold: when its process
        was launched, so imports, data and model count toward its budget); None: not counted."""
        self.cfg, self.data, self.fold, self.run = cfg, data, fold, run
        self.started, self.startup = started, 0.0
        self.dir = run.fold_dir(fold)
        self.dist = dist or Dist()
        self.rt = Runtime.from_config(cfg, self.dist.local_rank if self.dist.enabled else None)
        self.spec = InputSpec.from_config(cfg)
        if self.spec.depth:
            require_depths(data.ids, data.z, "depths.csv")
        self.train_idx, self.val_idx = fold_indices(data.ids, folds, fold)
        self.train_set = self._train_set()
        self.model = model_from_config(cfg).to(self.rt.device, memory_format=self.rt.memory_format)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.refits = run.fold_refits(fold)  # budget refits so far (a resumed fold's)
        self._set_stage(1)
        fp16 = self.rt.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=fp16)
        self.train_model = wrap_ddp(self.model, self.dist, self.rt)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.batches = self._train_batches()
        self.start, self.best, self.history = 0, -math.inf, []
        self.ema = None
        if cfg.ema > 0:
            avg = get_ema_multi_avg_fn(cfg.ema)
            self.ema = AveragedModel(self.model, multi_avg_fn=avg, use_buffers=True)

    def _train_batches(self) -> SaltDataset | DeviceBatches:
        """Per-sample dataset (albumentations, DataLoader) or the whole set on the device."""
        cfg, data = self.cfg, self.train_set
        if cfg.data_on_device:
            x = self.spec.make(data.images, data.z).to(self.rt.device)
            y = torch.from_numpy(data.masks).float().unsqueeze(1).to(self.rt.device)
            aug = dict(
                hflip=cfg.hflip, affine=cfg.affine, brightness_contrast=cfg.brightness_contrast
            )
            return DeviceBatches(
                x, y, cfg.batch_size, aug if cfg.augment else None, self.dist.rank, self.dist.world
            )
        aug = build_augment(cfg.hflip, cfg.affine, cfg.brightness_contrast) if cfg.augment else None
        return SaltDataset(data.images, data.masks, aug, data.z, self.spec)

    def _train_set(self) -> TrainData:
        """The fold's training images, plus the pseudo-labelled set when `pseudo` is set (its
        ids must not be labelled ids: pseudo images never enter a validation fold)."""
        own = self.data.subset(self.train_idx)
        if not self.cfg.pseudo:
            return own
        from tgs.data.cache import load_train_cached

        extra = load_train_cached(self.cfg.pseudo)
        clash = set(extra.ids) & set(self.data.ids)
        if clash:
            raise TGSError(f"pseudo set {self.cfg.pseudo} holds labelled id {sorted(clash)[0]!r}")
        if self.spec.depth:
            require_depths(extra.ids, extra.z, Path(self.cfg.pseudo) / "depths.csv")
        return TrainData(
            own.ids + extra.ids,
            np.concatenate([own.images, extra.images]),
            np.concatenate([own.masks, extra.masks]),
            np.concatenate([own.z, extra.z]),
        )

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated, saved and used to predict (EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.model

    def _set_stage(self, stage: int) -> None:
        """Loss, optimizer and schedule of stage 1 (the config's) or stage 2 (its loss, a fresh
        optimizer at stage2_lr, cosine over stage2_epochs), on the current weights (and EMA)."""
        c = self.cfg if stage == 1 else stage2_config(self.cfg)
        self.criterion = Criterion(create_loss(c.loss), c.cls_weight, c.aux_weight)
        self.criterion = self.criterion.to(self.rt.device)
        self.opt = build_optimizer(c, self.model)
        self.steps = steps_per_epoch(len(self.train_set.ids), c, self.dist.world)
        if stage == 1:  # a refit fold's cosine goes on as it was, stretched at each refit
            self.sched = stage1_scheduler(c, self.opt, self.steps, self.refits)
        else:
            self.sched = build_scheduler(c, self.opt, self.steps)
        self.stage = stage

    def _init_from(self, source: str) -> None:
        """Staged training: start from another run's weights for this fold (model only)."""
        path = Path(source.format(fold=self.fold))
        if path.is_dir():
            path = Run(path).best(self.fold)
        state = read_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError:
            raise TGSError(
                f"init_from {path}: its weights do not fit model {self.cfg.model!r}"
            ) from None

    # -- checkpoints -------------------------------------------------------------------------
    def _state(self, epoch: int, score: float) -> dict:
        return {
            "model": self.eval_model.state_dict(),
            "config": self.cfg.to_dict(),
            "epoch": epoch,
            "score": score,
            "fold": self.fold,
        }

    def _full_state(self, epoch: int, score: float) -> dict:
        return {
            **self._state(epoch, score),
            "train_model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "best_score": self.best,
            "history": self.history,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_state(),
                "python": random.getstate(),
            },
        }

    def restore(self) -> None:
        """Continue from last.pt: weights, optimizer, scheduler, scaler, RNG, epoch, history."""
        state = read_checkpoint(self.run.last(self.fold))
        if state["epoch"] + 1 > self.cfg.epochs:  # the last finished epoch was in stage 2
            self._set_stage(2)
        self.model.load_state_dict(state["train_model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and not self.cfg.scheduler.startswith("cosine"):
            self.sched.load_state_dict(state["scheduler"])  # cosine: its config and step say all
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        _set_numpy_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        self.start, self.best = state["epoch"] + 1, state["best_score"]
        self.history = state["history"]
        log.info(
            "fold %d: resuming after epoch %d of %d", self.fold, self.start, total_epochs(self.cfg)
        )

    # -- loop --------------------------------------------------------------------------------
    def validate(self, tta: str = "none", model=None) -> tuple[np.ndarray, np.ndarray | None]:
        """(pixel probabilities (N_val, 101, 101), salt-present probabilities or None) of
        `model` (default: the eval model) on the fold's validation ids."""
        vi = self.val_idx
        return predict_array(
            model or self.eval_model,
            self.data.images[vi],
            self.rt,
            self.cfg.val_batch_size,
            tta,
            self.data.z[vi],
            self.spec,
        )

    def run_epoch(self, epoch: int) -> None:
        cfg, t0 = self.cfg, time.time()
        if epoch >= cfg.epochs and self.stage == 1:
            self._set_stage(2)
        if isinstance(self.batches, DeviceBatches):
            loader = self.batches.epoch(cfg.seed * 1000 + epoch)
        else:
            loader = epoch_loader(self.batches, cfg, epoch, self.rt, self.dist)
        if cfg.max_train_batches:
            loader = take(loader, cfg.max_train_batches)
        desc = f"fold {self.fold} epoch {epoch + 1}/{total_epochs(cfg)}"
        desc += " (stage 2)" if self.stage == 2 else ""
        lr = self.opt.param_groups[0]["lr"]  # logged: the lr this epoch starts with
        first = (epoch - (cfg.epochs if self.stage == 2 else 0)) * self.steps
        done = [0]

        def on_step() -> None:
            done[0] += 1
            if self.sched is not None:
                self.sched.step_update(first + done[0])
            if self.ema is not None:
                self.ema.update_parameters(self.model)

        low = epoch < low_epochs(cfg)
        desc += f" ({cfg.low_size} px)" if low else ""
        with train_size(self.model, cfg.low_size if low else 0):
            loss = train_one_epoch(
                self.train_model,
                loader,
                self.criterion,
                self.opt,
                self.scaler,
                self.rt,
                desc,
                on_step,
                quiet=not self.dist.main,
            )
        loss = mean_across(self.dist, loss)
        score = self.val_score() if self.validates(epoch) else math.nan
        if self.sched is not None and not math.isnan(score):  # plateau steps on the score
            self.sched.step(epoch + 1, score)
        seconds = time.time() - t0
        self.history.append(
            {
                "epoch": epoch + 1,
                "stage": self.stage,
                "loss": loss,
                "val_score": score,
                "lr": lr,
                "seconds": seconds,
            }
        )
        improved = score > self.best
        self.best = max(self.best, score)
        self._replan(epoch)  # before last.pt, so a resumed fold finds the refit schedule
        if self.dist.main:
            t_save = time.perf_counter()
            self._save(epoch, score, improved)  # its time is saved with the next epoch's
            self.history[-1]["save_seconds"] = time.perf_counter() - t_save
            mark = " *" if improved else ""
            log.info(
                f"{desc}: loss {loss:.4f} val {score:.4f} best {self.best:.4f} lr {lr:.2e} "
                f"{seconds:.1f}s{mark}"
            )

    def _replan(self, epoch: int) -> None:
        """Budgeted runs: refit the fold's epochs to the time its epochs took
        (`tgs.budget.replan`) when `_refit_due`; saved as foldK/plan.json (a resumed fold keeps
        it). Rank 0's refit is every rank's; a cosine goes on from this step's learning rate,
        stretched over the new length (`stage1_scheduler`), other schedules are laid out again."""
        from tgs.budget.plan import apply_plan, replan

        plan = self.run.plan() if self._refit_due(epoch + 1) else None
        if plan is None:
            return
        seconds = [h["seconds"] for h in self.history]
        saves = [h["save_seconds"] for h in self.history if h.get("save_seconds") is not None]
        new = replan(self.cfg, plan, seconds, _median(saves), self.startup)
        new["saves_timed"] = bool(saves)  # False: no save timed yet (replan_after: 1)
        new = gather_objects(self.dist, new)[0]
        self.cfg, self.refits = apply_plan(self.cfg, new), [*self.refits, new]
        if self.dist.main:
            self.run.write_fold_refits(self.fold, self.refits)
            _log_refit(self.fold, new, self.run.fold_plan_path(self.fold))
        if self.cfg.scheduler.startswith("cosine"):  # plateau and none have no length
            self.sched = stage1_scheduler(self.cfg, self.opt, self.steps, self.refits)
            self.sched.step_update((epoch + 1) * self.steps)

    def _refit_due(self, n: int) -> bool:
        """After `n` epochs of a budgeted stage 1: the first refit once `replan_after` epochs
        have run; with progressive resizing a second once `replan_after` full-size epochs have
        (unless the first was already on full-size epochs, or predates the second refit)."""
        cfg = self.cfg
        if not (cfg.budget_minutes and cfg.replan_after) or n >= cfg.epochs:
            return False  # no budget, or stage 1 is over: nothing left to lay out
        if not self.refits:
            return n >= cfg.replan_after
        first, low = self.refits[0], low_epochs(cfg)
        return (
            len(self.refits) == 1
            and bool(low)
            and n >= low + cfg.replan_after
            and "from_epochs" in first  # older records: refit once, as then
            and not first.get("on_full_size")
        )

    def validates(self, epoch: int) -> bool:
        """Validate after `epoch` (0-based)? Every `val_every` epochs and at each stage's end."""
        n, every = epoch + 1, max(1, self.cfg.val_every)
        return n % every == 0 or n == self.cfg.epochs or n == total_epochs(self.cfg)

    def _save(self, epoch: int, score: float, improved: bool) -> None:
        """best.pt when improved, a snapshot at each cycle's end, last.pt and log.csv always."""
        run, k = self.run, self.fold
        if improved:
            save_checkpoint(run.best(k), self._state(epoch, score))
        if self.cfg.snapshots and (epoch + 1) % cycle_epochs(self.cfg) == 0:
            cycle = (epoch + 1) // cycle_epochs(self.cfg)
            save_checkpoint(run.snapshot(k, cycle), self._state(epoch, score))
        save_checkpoint(run.last(k), self._full_state(epoch, score))
        with atomic_path(run.log(k)) as tmp:
            pd.DataFrame(self.history).to_csv(tmp, index=False)

    def val_score(self) -> float:
        """Competition score (p > 0.5) on the fold's validation ids. Distributed: each rank
        predicts a disjoint shard (no padding duplicates) and the per-image scores are gathered,
        so the value equals a single-process evaluation."""
        d, vi = self.dist, self.val_idx
        shard = np.arange(len(vi))[d.rank :: d.world]
        probs, _ = predict_array(
            self.eval_model,
            self.data.images[vi[shard]],
            self.rt,
            self.cfg.val_batch_size,
            "none",
            self.data.z[vi[shard]],
            self.spec,
        )
        scores = per_image_scores(probs > 0.5, self.data.masks[vi[shard]])
        gathered = gather_objects(d, scores.tolist())
        return float(np.mean(np.concatenate([np.asarray(g, dtype=float) for g in gathered])))

    def fit(self, resume: bool = False) -> dict:
        """Train the remaining epochs, then write the OOF and summary; returns the summary."""
        last = self.run.last(self.fold)
        if last.exists() and not resume:
            raise TGSError(f"{last} exists: pass --resume to continue it, or use a new --run")
        self.dir.mkdir(parents=True, exist_ok=True)
        if resume and last.exists():
            self.restore()
        if self.started is not None:  # the fold's own one-off seconds before its first epoch
            self.startup = time.time() - self.started
        t0, epoch = time.time(), self.start
        while epoch < total_epochs(self.cfg):  # a budget refit may change the total on the way
            self.run_epoch(epoch)
            if self.cfg.max_minutes and self._out_of_time(t0):
                log.info("fold %d: stopping after epoch %d: max_minutes", self.fold, epoch + 1)
                if math.isnan(self.history[-1]["val_score"]):  # stopped between validations
                    score = self.val_score()
                    self.history[-1]["val_score"] = score
                    self.best = max(self.best, score)
                    self._save(epoch, score, improved=score >= self.best)
                break
            epoch += 1
        return self.finish()

    def _out_of_time(self, t0: float) -> bool:
        """Would one more epoch (as long as the last) pass the max_minutes budget?"""
        elapsed, last = time.time() - t0, self.history[-1]["seconds"]
        return elapsed + last > 60 * self.cfg.max_minutes

    def finish(self) -> dict:
        """Reload the best checkpoint, write the hflip-TTA OOF (oof.npz) and summary.json
        (rank 0 only when distributed)."""
        if not self.history:
            raise TGSError(f"{self.dir}: no epoch was trained (epochs={total_epochs(self.cfg)})")
        identical = weights_identical(self.dist, self.model) if self.dist.enabled else None
        if not self.dist.main:
            barrier(self.dist)
            return {}
        run, k, vi = self.run, self.fold, self.val_idx
        best = read_checkpoint(run.best(k))
        files = run.model_files(k)
        probs, cls = self.ensemble_oof(files)
        run.save_oof(k, [self.data.ids[i] for i in vi], probs, cls)
        summary = {
            "fold": k,
            "best_epoch": int(best["epoch"]) + 1,
            "best_val_score": float(best["score"]),
            "oof_score_0.5": competition_score(probs > 0.5, self.data.masks[vi]),
            "tta": self.cfg.tta,
            "models": [run.relative(f) for f in files],
            "n_train": len(self.train_idx),
            "n_pseudo": len(self.train_set.ids) - len(self.train_idx),
            "n_val": len(vi),
            "epochs": len(self.history),
            "train_seconds": float(sum(h["seconds"] for h in self.history)),
        }
        if self.dist.enabled:
            summary.update(ddp_world_size=self.dist.world, ddp_weights_identical=identical)
        run.write_summary(k, summary)
        barrier(self.dist)
        return summary

    def ensemble_oof(self, files: list[Path]) -> tuple[np.ndarray, np.ndarray | None]:
        """Validation probabilities averaged over the checkpoints `files` and the run's TTA."""
        vi = self.val_idx
        return predict_array(
            load_models(files, self.rt),
            self.data.images[vi],
            self.rt,
            self.cfg.val_batch_size,
            self.cfg.tta,
            self.data.z[vi],
            self.spec,
        )


def _median(values: list[float]) -> float:
    """The median of `values` (0.0 for none)."""
    return float(np.median(values)) if values else 0.0


def _log_refit(fold: int, new: dict, path: Path) -> None:
    log.info(
        "fold %d: %d real epochs (%s) took %.2fx the probe's estimate -> %d epochs (+%d stage "
        "2) instead of %d (%s)",
        fold,
        new["after_epochs"],
        "timed on the full-size ones" if new.get("on_full_size") else "timed",
        new["ratio"],
        new["epochs"],
        new["stage2_epochs"],
        new["planned_epochs"],
        path,
    )


def _numpy_state() -> dict:
    """numpy's global RNG state as plain values (checkpoints are read with weights_only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state) -> None:
    """Restore `_numpy_state()` (or the tuple older checkpoints stored)."""
    if isinstance(state, dict):
        keys = state["keys"].numpy().astype(np.uint32)
        state = (state["name"], keys, state["pos"], state["has_gauss"], state["gauss"])
    np.random.set_state(state)
