"""Train one fold: the epoch loop with validation on the competition metric, checkpoints and
the OOF. The trainer is built from explicit parts (`build_parts`: runtime, data, model); what
happens around the loop (EMA, snapshots, the validation cadence, max_minutes, the budget
refit) comes in as callbacks (`tgs.train.callbacks`), which change training only through
`reschedule`."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tgs.core import commands
from tgs.core.config import Config
from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.faults import fault_point
from tgs.core.fileio import atomic_path
from tgs.data.dataset import InputSpec
from tgs.data.io import TrainData, require_depths
from tgs.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from tgs.models.losses import create_loss
from tgs.models.registry import SegModel, model_from_config, resolve_pretrained
from tgs.post.metric import competition_score, per_image_scores
from tgs.predict.inference import Runtime, load_models, predict_array
from tgs.run.folder import Run
from tgs.run.layout import RunPaths
from tgs.run.records import FoldRefit, FoldSummary
from tgs.train.callbacks import Callback
from tgs.train.data import FoldBatches, fold_train_set, train_batches
from tgs.train.distributed import (
    Dist,
    barrier,
    gather_objects,
    mean_across,
    weights_identical,
    wrap_ddp,
)
from tgs.train.history import EpochRow
from tgs.train.loop import Criterion, fold_indices, take, train_one_epoch, train_size
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


@dataclass
class FoldParts:
    """What a fold trains with: the runtime (device, AMP, memory layout), the input planes, the
    labelled set split into the fold's training and validation ids (`train_set`: its training
    images plus a pseudo-labelled set), the batches, and the model: `model` holds the trained
    weights, `train_model` is what the loop steps (DDP-wrapped, compiled)."""

    fold: int
    dist: Dist
    rt: Runtime
    spec: InputSpec
    data: TrainData
    train_idx: np.ndarray
    val_idx: np.ndarray
    train_set: TrainData
    model: SegModel
    train_model: torch.nn.Module
    batches: FoldBatches


def build_parts(
    cfg: Config, data: TrainData, folds: pd.DataFrame, fold: int, dist: Dist | None = None
) -> FoldParts:
    """Fold `fold`'s parts as `cfg` describes them (the model built, and started from
    `init_from` when set)."""
    dist = dist or Dist()
    rt = Runtime.from_config(cfg, dist.local_rank if dist.enabled else None)
    spec = InputSpec.from_config(cfg)
    if spec.depth:
        require_depths(data.ids, data.z, "depths.csv")
    train_idx, val_idx = fold_indices(data.ids, folds, fold)
    train_set = fold_train_set(data, train_idx, cfg, spec)
    model = model_from_config(cfg).to(rt.device, memory_format=rt.memory_format)
    if cfg.init_from:
        _init_from(model, cfg, fold)
    frozen = cfg.freeze_encoder_epochs > 0  # frozen epochs leave encoder weights gradless
    train_model = wrap_ddp(model, dist, rt, unused=frozen)
    if cfg.compile:
        train_model = torch.compile(train_model)
    batches = train_batches(cfg, train_set, spec, rt, dist)
    return FoldParts(
        fold, dist, rt, spec, data, train_idx, val_idx, train_set, model, train_model, batches
    )


def _init_from(model: SegModel, cfg: Config, fold: int) -> None:
    """Staged training: start from another run's weights for this fold (model only)."""
    path = Path(cfg.init_from.format(fold=fold))
    if path.is_dir():
        path = RunPaths(path).fold(fold).best
    load_weights(model, path, cfg, f"init_from {path}")


def build_trainer(
    cfg: Config,
    data: TrainData,
    folds: pd.DataFrame,
    fold: int,
    run: Run,
    *,
    callbacks: list[Callback],
    dist: Dist | None = None,
    started: float | None = None,
) -> FoldTrainer:
    """A trainer of fold `fold` into `run` with `callbacks` (`tgs.budget.refit.fold_callbacks`
    decides a fold's), its parts built (`build_parts`)."""
    if cfg.input_mean is None or cfg.input_std is None:  # a config no run resolved yet
        cfg, _ = resolve_pretrained(cfg)
    parts = build_parts(cfg, data, folds, fold, dist)
    return FoldTrainer(cfg, parts, run, callbacks=callbacks, started=started)


class FoldTrainer:
    """State of one fold's training; `fit()` runs it, `resume=True` continues from last.pt.

    The caller seeds the RNGs and joins the process group (`tgs.pipeline.stages.train_fold`).
    `started`: `time.time()` when the fold's work began (a child fold: when its process was
    launched, so imports, data and model count toward its budget); None: not counted."""

    def __init__(
        self,
        cfg: Config,
        parts: FoldParts,
        run: Run,
        *,
        callbacks: list[Callback],
        started: float | None = None,
    ):
        self.cfg, self.run, self.parts = cfg, run, parts
        self.fold, self.dist, self.rt, self.spec = parts.fold, parts.dist, parts.rt, parts.spec
        self.data, self.train_idx, self.val_idx = parts.data, parts.train_idx, parts.val_idx
        self.train_set, self.batches = parts.train_set, parts.batches
        self.model, self.train_model = parts.model, parts.train_model
        self.paths = run.fold(self.fold)
        self.started, self.startup = started, 0.0
        self.refits: list[FoldRefit] = run.plans.refits(self.fold)  # a resumed fold's so far
        self._set_stage(1)
        fp16 = self.rt.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=fp16)
        self.start, self.best, self.history = 0, -math.inf, []
        self.history: list[EpochRow]
        self.callbacks = list(callbacks)
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

    def reschedule(self, refit: FoldRefit, after_epoch: int) -> None:
        """Lay the rest of stage 1 out again after epoch `after_epoch` (0-based), as a budget
        refit says: the config takes its epochs, stage 2, warm-up and cycle, the refit joins
        `refits`, and a cosine goes on from this step's learning rate, stretched over the new
        length (`stage1_scheduler`); plateau and none have no length to change."""
        self.cfg = replace(self.cfg, **refit.planned())
        self.refits = [*self.refits, refit]
        if self.cfg.scheduler.startswith("cosine"):
            self.sched = stage1_scheduler(self.cfg, self.opt, self.steps, self.refits)
            self.sched.step_update((after_epoch + 1) * self.steps)

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
            "history": [row.to_dict() for row in self.history],
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
        last = self.paths.last
        state = read_checkpoint(last)
        needed = ["epoch", "train_model", "optimizer", "scaler", "rng", "best_score", "history"]
        needed += [cb.state_key for cb in self.callbacks if cb.state_key]
        if missing := [k for k in needed if k not in state]:
            raise DamagedFileError(
                f"{last} cannot continue the fold (no {', '.join(missing)}: not a last.pt of "
                f"this tgs, or made with other callbacks); train the fold again: delete "
                f"{self.paths.dir} and run `{commands.resume_run(self.run.root)}`"
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
        self.history = [EpochRow.from_dict(row) for row in state["history"]]
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
            z=self.data.z[vi],
            spec=self.spec,
        )

    def after_step(self) -> None:
        """The callbacks' `on_step` (the loop calls it after each optimizer step)."""
        for cb in self.callbacks:
            cb.on_step(self)
        fault_point("step")

    def _loader(self, epoch: int):
        """Epoch `epoch`'s batches: order and augmentation from (seed, epoch) alone."""
        loader = self.batches.epoch(epoch)
        return take(loader, self.cfg.max_train_batches) if self.cfg.max_train_batches else loader

    def _train_epoch(self, epoch: int, desc: str) -> float:
        """Train epoch `epoch` (the schedule stepped after each step); its mean loss."""
        cfg = self.cfg
        first = (epoch - (cfg.epochs if self.stage == 2 else 0)) * self.steps
        done = [0]

        def on_step() -> None:
            done[0] += 1
            if self.sched is not None:
                self.sched.step_update(first + done[0])
            self.after_step()

        low = epoch < low_epochs(cfg)
        with train_size(self.model, cfg.low_size if low else 0):
            loss = train_one_epoch(
                self.train_model,
                self._loader(epoch),
                self.criterion,
                self.opt,
                self.scaler,
                rt=self.rt,
                desc=desc,
                on_step=on_step,
                quiet=not self.dist.main,
            )
        return mean_across(self.dist, loss)

    def run_epoch(self, epoch: int) -> None:
        """Train epoch `epoch` (0-based), validate it when due, then the callbacks, the
        checkpoints and log.csv."""
        cfg, t0 = self.cfg, time.time()
        if epoch >= cfg.epochs and self.stage == 1:
            self._set_stage(2)
        desc = f"fold {self.fold} epoch {epoch + 1}/{total_epochs(cfg)}"
        desc += " (stage 2)" if self.stage == 2 else ""
        desc += f" ({cfg.low_size} px)" if epoch < low_epochs(cfg) else ""
        lr = self.opt.param_groups[0]["lr"]  # logged: the lr this epoch starts with
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        loss = self._train_epoch(epoch, desc)
        score = self.val_score() if self.validates(epoch) else math.nan
        if self.sched is not None and not math.isnan(score):  # plateau steps on the score
            self.sched.step(epoch + 1, score)
        row = EpochRow(epoch + 1, self.stage, loss, score, lr, time.time() - t0)
        self.history.append(row)
        improved = score > self.best
        self.best = max(self.best, score)
        for cb in self.callbacks:  # a refit goes before last.pt: a resumed fold finds it
            cb.on_epoch_end(self, epoch)
        if self.dist.main:
            t_save = time.perf_counter()
            self._save(epoch, score, improved)  # its time is saved with the next epoch's
            row.save_seconds = time.perf_counter() - t_save
            log.info(
                f"{desc}: loss {loss:.4f} val {score:.4f} best {self.best:.4f} lr {lr:.2e} "
                f"{row.seconds:.1f}s{' *' if improved else ''}"
            )

    def validates(self, epoch: int) -> bool:
        """Validate after `epoch` (0-based)? At each stage's end, and when a callback asks."""
        n = epoch + 1
        if n == self.cfg.epochs or n == total_epochs(self.cfg):
            return True
        return any(cb.wants_validation(self, epoch) for cb in self.callbacks)

    def _save(self, epoch: int, score: float, improved: bool) -> None:
        """best.pt when improved, the callbacks' files (snapshots), last.pt and log.csv."""
        if improved:
            self.save_model(self.paths.best, epoch, score)
        for cb in self.callbacks:
            cb.on_save(self, epoch, score)
        save_checkpoint(self.paths.last, self._full_state(epoch, score))
        with atomic_path(self.paths.log) as tmp:
            pd.DataFrame([row.to_dict() for row in self.history]).to_csv(tmp, index=False)

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

    def fit(self, resume: bool = False) -> FoldSummary | None:
        """Train the remaining epochs, then write the OOF and summary; returns the summary
        (None on a non-zero rank of a distributed fold)."""
        last = self.paths.last
        if last.exists() and not resume:
            raise TGSError(f"{last} exists: pass --resume to continue it, or use a new --run")
        self.paths.dir.mkdir(parents=True, exist_ok=True)
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
        if not self.history[-1].validated:
            score = self.val_score()
            self.history[-1].val_score = score
            self.best = max(self.best, score)
            self._save(epoch, score, improved=score >= self.best)

    def finish(self) -> FoldSummary | None:
        """Reload the best checkpoint, write the OOF (oof.npz: the run's TTA over the fold's
        model files) and summary.json (rank 0 only when distributed; None on the others)."""
        if not self.history:
            raise TGSError(
                f"{self.paths.dir}: no epoch was trained (epochs={total_epochs(self.cfg)})"
            )
        identical = weights_identical(self.dist, self.model) if self.dist.enabled else None
        if not self.dist.main:
            barrier(self.dist)
            return None
        run, k, vi = self.run, self.fold, self.val_idx
        best = read_checkpoint(self.paths.best)
        files = run.model_files(k)
        probs, cls = self.predict(load_models(files, self.rt), self.cfg.tta)
        run.save_oof(k, [self.data.ids[i] for i in vi], probs, cls)
        summary = FoldSummary(
            fold=k,
            best_epoch=int(best["epoch"]) + 1,
            best_val_score=float(best["score"]),
            oof_score=competition_score(probs > 0.5, self.data.masks[vi]),
            tta=self.cfg.tta,
            models=[run.relative(f) for f in files],
            n_train=len(self.train_idx),
            n_pseudo=len(self.train_set.ids) - len(self.train_idx),
            n_val=len(vi),
            epochs=len(self.history),
            train_seconds=float(sum(row.seconds for row in self.history)),
            ddp_world_size=self.dist.world if self.dist.enabled else None,
            ddp_weights_identical=identical,
        )
        run.write(summary)
        barrier(self.dist)
        return summary
