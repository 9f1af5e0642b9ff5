"""Train on Kaggle's GPU: `tgs kaggle train` stages tgs and the resolved config as a dataset and
pushes a training kernel (GPU and internet on, the competition attached; an earlier training
kernel attached to continue its run). `fetch.py` brings its run back."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from tgs.core.config import dump_config, load_config
from tgs.kaggle.client import KaggleError
from tgs.kaggle.kernels import STAGING, _user, download_output, kernel_state
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
from tgs.run.lock import run_lock
from tgs.run.records import KaggleStaging, TrainStatus

log = logging.getLogger(__name__)
_PART = re.compile(r"-part-(\d+)$")
_KERNEL = re.compile(r"^[^/\s]+/[^/\s]{5,}$")
RESUMABLE = ("complete", "error", "cancel_acknowledged")  # a kernel whose output is final
_RESUME_FILES = r"^(run/config\.yaml|tgs-train\.json)$"


def push_training(
    config: str | os.PathLike | None,
    overrides: list[str],
    run_name: str | None = None,
    username: str | None = None,
    accelerator: str = DEFAULT_ACCELERATOR,
    resume_from: str | None = None,
    dry_run: bool = False,
    message: str = "tgs kaggle train",
    staging: str | os.PathLike = STAGING,
    max_wait: float = 1800.0,
    poll_seconds: float = 5.0,
) -> Push:
    """Resolve and check the config (a budget the session cannot hold is refused), check what a
    first use needs (credentials, client, the competition's rules, the GPU quota), stage the
    training dataset and kernel under STAGING/RUN/train, publish the dataset and push the
    kernel with `--accelerator`. `resume_from` (OWNER/KERNEL): the new kernel ("... part N")
    takes that kernel's output and continues its run (it must have finished, complete or in
    error, with a run in its output)."""
    from tgs.models.registry import smp_needed_by  # torch, like validate_config
    from tgs.train.validate import validate_config  # torch: resolves every name before pushing

    cfg = load_config(config, overrides)
    validate_config(cfg)
    check_budget(cfg, SESSION_MINUTES)
    name = run_name or cfg.name
    part = 1
    if resume_from:
        if not _KERNEL.match(resume_from):
            raise KaggleError(f"--resume-from {resume_from!r}: expected OWNER/KERNEL-SLUG")
        found = _PART.search(resume_from)
        part = int(found.group(1)) + 1 if found else 2
    user = _user(username, dry_run)
    names = kaggle_names(name, train=True, part=part)
    dataset_ref, kernel_ref = f"{user}/{names.dataset_slug}", f"{user}/{names.kernel_slug}"
    layout = KaggleStaging(Path(staging), training=True)
    result = Push(dataset_ref, kernel_ref, layout.run_dir(name), gpu=True, internet=True)
    result.accelerator, result.resume_from = accelerator, resume_from
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
            dataset_ref,
            names.dataset_title,
            resume_from,
            stage_id=stage_id,
        )
        k_dir = stage_training_kernel(
            layout.kernel(name),
            kernel_ref,
            names.kernel_title,
            dataset_ref,
            accelerator,
            resume_from,
            stage_id=stage_id,
        )
        return publish(result, ds, k_dir, message, max_wait, dry_run, poll_seconds)


def check_resumable(ref: str, name: str) -> None:
    """--resume-from REF: REF has finished (complete, or ended in error or at the time limit)
    and its output holds an unfinished run (run/config.yaml; tgs-train.json, when there, says
    it is not finished). Reads only those two files of its output."""
    status, failure = kernel_state(ref)
    if status not in RESUMABLE:
        raise KaggleError(
            f"--resume-from {ref} is {status}: its output is attached only once it has finished "
            f"(python -m tgs kaggle kernel-status runs/{name} --kernel {ref} --wait)"
        )
    with tempfile.TemporaryDirectory(prefix="tgs-resume-") as tmp:
        dest = download_output(ref, Path(tmp) / "output", _RESUME_FILES)
        has_run = (dest / RUN / "config.yaml").is_file()
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
            f"--resume-from {ref}: its run is finished; bring it back with python -m tgs kaggle "
            f"kernel-output runs/{name} --kernel {ref}"
        )
    if status != "complete":
        log.warning("warning: %s ended %s; continuing the run its output holds", ref, ended)
