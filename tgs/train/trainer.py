"""Train one fold: the epoch loop with validation on the competition metric, checkpoints and
the OOF. What happens around the loop (EMA, snapshots, the validation cadence, max_minutes, the
budget refit) comes in as callbacks (`tgs.train.callbacks`)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tgs.core.config import Config
from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.faults import fault_point
from tgs.core.fileio import atomic_path
from tgs.data.batch_aug import DeviceBatches
from tgs.data.dataset import InputSpec
from tgs.data.io import TrainData, require_depths
from tgs.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from tgs.models.losses import create_loss
from tgs.models.registry import model_from_config, resolve_pretrained
from tgs.post.metric import competition_score, per_image_scores
from tgs.predict.inference import Runtime, load_models, predict_array
from tgs.run.folder import Run
from tgs.train.callbacks import Callback, default_callbacks
from tgs.train.data import fold_train_set, train_batches
from tgs.train.distributed import (
    Dist,
    barrier,
    gather_objects,
    mean_across,
    weights_identical,
    wrap_ddp,
)
from tgs.train.loop import Criterion, epoch_loader, fold_indices, take, train_one_epoch, train_size
from tgs.train.rng import rng_state, set_rng_state
from tgs.train.schedule import (
    build_optimizer,
    build_scheduler,
    low_epochs,
    stage1_scheduler,
    stage2_config,
    steps_per_epoch,
    total_epochs,
)

log = logging.getLogger(__name__)


class FoldTrainer:
    """State of one fold's training; `fit()` runs it, `resume=True` continues from last.pt.

    The caller seeds the RNGs and joins the process group (`tgs.pipeline.stages.train_fold`)
    and chooses the callbacks (None: `default_callbacks(cfg)`)."""

    def __init__(
        self,
        cfg: Config,
        data: TrainData,
        folds: pd.DataFrame,
        fold: int,
        run: Run,
        dist: Dist | None = None,
        started: float | None = None,
        callbacks: list[Callback] | None = None,
    ):
        """`started`: `time.time()` when the fold's work began (a child fold: when its process
        was launched, so imports, data and model count toward its budget); None: not counted."""
        if cfg.input_mean is None or cfg.input_std is None:  # a config no run resolved yet
            cfg, _ = resolve_pretrained(cfg)
        self.cfg, self.data, self.fold, self.run = cfg, data, fold, run
        self.started, self.startup = started, 0.0
        self.dir = run.fold_dir(fold)
        self.dist = dist or Dist()
        self.rt = Runtime.from_config(cfg, self.dist.local_rank if self.dist.enabled else None)
        self.spec = InputSpec.from_config(cfg)
        if self.spec.depth:
            require_depths(data.ids, data.z, "depths.csv")
        self.train_idx, self.val_idx = fold_indices(data.ids, folds, fold)
        self.train_set = fold_train_set(data, self.train_idx, cfg, self.spec)
        self.model = model_from_config(cfg).to(self.rt.device, memory_format=self.rt.memory_format)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.refits = run.fold_refits(fold)  # budget refits so far (a resumed fold's)
        self._set_stage(1)
        fp16 = self.rt.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=fp16)
        frozen = cfg.freeze_encoder_epochs > 0  # frozen epochs leave encoder weights gradless
        self.train_model = wrap_ddp(self.model, self.dist, self.rt, unused=frozen)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.batches = train_batches(cfg, self.train_set, self.spec, self.rt.device, self.dist)
        self.start, self.best, self.history = 0, -math.inf, []
        self.callbacks = default_callbacks(cfg) if callbacks is None else list(callbacks)
        for cb in self.callbacks:
            cb.setup(self)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated, saved and used to predict (a callback's, such as the
        EMA's, else the trained ones)."""
        for cb in self.callbacks:
            model = cb.eval_model()
            if model is not None:
                return model
        return self.model

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
        load_weights(self.model, path, self.cfg, f"init_from {path}")

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
        state = {
            **self._state(epoch, score),
            "train_model": self.model.state_dict(),
            "ema": None,  # older readers look for it; an EMA callback fills it in
            "best_score": self.best,
            "history": self.history,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }
        for cb in self.callbacks:
            if cb.state_key:
                state[cb.state_key] = cb.state_dict()
        return state

    def save_model(self, path: Path, epoch: int, score: float) -> None:
        """A model checkpoint (the eval weights, config, epoch, score) at `path`."""
        save_checkpoint(path, self._state(epoch, score))

    def restore(self) -> None:
        """Continue from last.pt: weights, optimizer, scheduler, scaler, RNG, epoch, history
        and the callbacks' states."""
        last = self.run.last(self.fold)
        state = read_checkpoint(last)
        needed = ["epoch", "train_model", "optimizer", "scaler", "rng", "best_score", "history"]
        needed += [cb.state_key for cb in self.callbacks if cb.state_key]
        if missing := [k for k in needed if k not in state]:
            raise DamagedFileError(
                f"{last} cannot continue the fold (no {', '.join(missing)}: not a last.pt of "
                f"this tgs, or made with other callbacks); train the fold again: delete "
                f"{self.dir} and run `{self.run.resume_command}`"
            )
        if state["epoch"] + 1 > self.cfg.epochs:  # the last finished epoch was in stage 2
            self._set_stage(2)
        self.model.load_state_dict(state["train_model"])
        for cb in self.callbacks:
            if cb.state_key:
                cb.load_state_dict(state[cb.state_key])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and not self.cfg.scheduler.startswith("cosine"):
            self.sched.load_state_dict(state["scheduler"])  # cosine: its config and step say all
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.start, self.best = state["epoch"] + 1, state["best_score"]
        self.history = state["history"]
        log.info(
            "fold %d: resuming after epoch %d of %d", self.fold, self.start, total_epochs(self.cfg)
        )

    # -- loop --------------------------------------------------------------------------------
    def predict(
        self, model: torch.nn.Module | list | None = None, tta: str = "none", shard=slice(None)
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(pixel probabilities (N, 101, 101), salt-present probabilities (N,) or None) of
        `model` (default: the eval model; a list: their mean) on the validation ids
        `val_idx[shard]`, averaged over the views of `tta`."""
        vi = self.val_idx[shard]
        return predict_array(
            model if model is not None else self.eval_model,
            self.data.images[vi],
            self.rt,
            self.cfg.val_batch_size,
            tta,
            self.data.z[vi],
            self.spec,
        )

    def validate(self, tta: str = "none", model=None) -> tuple[np.ndarray, np.ndarray | None]:
        """`predict` on all the fold's validation ids."""
        return self.predict(model, tta)

    def after_step(self) -> None:
        """The callbacks' `on_step` (the loop calls it after each optimizer step)."""
        for cb in self.callbacks:
            cb.on_step(self)
        fault_point("step")

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
            self.after_step()

        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
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
        for cb in self.callbacks:  # a refit goes before last.pt: a resumed fold finds it
            cb.on_epoch_end(self, epoch)
        if self.dist.main:
            t_save = time.perf_counter()
            self._save(epoch, score, improved)  # its time is saved with the next epoch's
            self.history[-1]["save_seconds"] = time.perf_counter() - t_save
            mark = " *" if improved else ""
            log.info(
                f"{desc}: loss {loss:.4f} val {score:.4f} best {self.best:.4f} lr {lr:.2e} "
                f"{seconds:.1f}s{mark}"
            )

    def validates(self, epoch: int) -> bool:
        """Validate after `epoch` (0-based)? At each stage's end, and when a callback asks."""
        n = epoch + 1
        if n == self.cfg.epochs or n == total_epochs(self.cfg):
            return True
        return any(cb.wants_validation(self, epoch) for cb in self.callbacks)

    def _save(self, epoch: int, score: float, improved: bool) -> None:
        """best.pt when improved, the callbacks' files (snapshots), last.pt and log.csv."""
        run, k = self.run, self.fold
        if improved:
            self.save_model(run.best(k), epoch, score)
        for cb in self.callbacks:
            cb.on_save(self, epoch, score)
        save_checkpoint(run.last(k), self._full_state(epoch, score))
        with atomic_path(run.log(k)) as tmp:
            pd.DataFrame(self.history).to_csv(tmp, index=False)

    def val_score(self) -> float:
        """Competition score (p > 0.5) on the fold's validation ids. Distributed: each rank
        predicts a disjoint shard (no padding duplicates) and the per-image scores are gathered,
        so the value equals a single-process evaluation."""
        d = self.dist
        shard = np.arange(len(self.val_idx))[d.rank :: d.world]
        probs, _ = self.predict(shard=shard)
        scores = per_image_scores(probs > 0.5, self.data.masks[self.val_idx[shard]])
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
        for cb in self.callbacks:
            cb.on_fit_start(self)
        epoch = self.start
        while epoch < total_epochs(self.cfg):  # a budget refit may change the total on the way
            self.run_epoch(epoch)
            if any(cb.should_stop(self, epoch) for cb in self.callbacks):
                self._stop(epoch)
                break
            epoch += 1
        return self.finish()

    def _stop(self, epoch: int) -> None:
        """A callback stopped the fit after `epoch`: validate it if it fell between
        validations, so best.pt holds the last weights when they are the best."""
        if math.isnan(self.history[-1]["val_score"]):
            score = self.val_score()
            self.history[-1]["val_score"] = score
            self.best = max(self.best, score)
            self._save(epoch, score, improved=score >= self.best)

    def finish(self) -> dict:
        """Reload the best checkpoint, write the OOF (oof.npz: the run's TTA over the fold's
        model files) and summary.json (rank 0 only when distributed)."""
        if not self.history:
            raise TGSError(f"{self.dir}: no epoch was trained (epochs={total_epochs(self.cfg)})")
        identical = weights_identical(self.dist, self.model) if self.dist.enabled else None
        if not self.dist.main:
            barrier(self.dist)
            return {}
        run, k, vi = self.run, self.fold, self.val_idx
        best = read_checkpoint(run.best(k))
        files = run.model_files(k)
        probs, cls = self.predict(load_models(files, self.rt), self.cfg.tta)
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
