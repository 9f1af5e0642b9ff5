"""Train on Kaggle's GPU: `tgs kaggle train` stages tgs and the resolved config as a dataset and
pushes a training kernel (GPU and internet on, the competition attached; an earlier training
kernel attached to continue its run); `fetch_run` brings the kernel's output back as a local
run folder and its submission with a manifest (`made: kaggle-train`)."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tgs.core.config import dump_config, load_config
from tgs.core.errors import TGSError
from tgs.core.fileio import atomic_dir, write_json
from tgs.kaggle.client import KaggleError, run_kaggle
from tgs.kaggle.competition import find_sample
from tgs.kaggle.kernels import (
    STAGING,
    Push,
    _user,
    download_output,
    keep_submission,
    kernel_output,
    kernel_status,
    publish,
)
from tgs.kaggle.limits import DEFAULT_ACCELERATOR, MARGIN_MINUTES, SESSION_MINUTES
from tgs.kaggle.stage import (
    SUBMISSION,
    kaggle_names,
    stage_training_dataset,
    stage_training_kernel,
)
from tgs.kaggle.training_kernel import RUN, check_budget
from tgs.predict.submission import validate_file
from tgs.run.folder import Run
from tgs.run.lock import LOCK_FILE, run_lock
from tgs.run.records import SUBMISSIONS_DIR, KaggleStaging, Manifest, TrainStatus

log = logging.getLogger(__name__)
MADE = "kaggle-train"  # the manifest's `made` of a submission a training kernel wrote
_PART = re.compile(r"-part-(\d+)$")
_KERNEL = re.compile(r"^[^/\s]+/[^/\s]{5,}$")


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
) -> Push:
    """Resolve and check the config (a budget the session cannot hold is refused), stage the
    training dataset and kernel under STAGING/RUN/train, check the GPU quota, publish the dataset
    and push the kernel with `--accelerator`. `resume_from` (OWNER/KERNEL): the new kernel
    ("... part N") takes that kernel's output and continues its run."""
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
    if resume_from and not dry_run:
        status = kernel_status(resume_from, staging=staging)
        if status != "complete":
            raise KaggleError(
                f"--resume-from {resume_from} is {status}: its output is attached only once it "
                f"has finished (python -m tgs kaggle kernel-status runs/{name} --kernel "
                f"{resume_from} --wait)"
            )
    user = _user(username, dry_run)
    names = kaggle_names(name, train=True, part=part)
    dataset_ref, kernel_ref = f"{user}/{names.dataset_slug}", f"{user}/{names.kernel_slug}"
    with run_lock(KaggleStaging(Path(staging)).run_dir(name)):  # one push/fetch per name
        layout = KaggleStaging(Path(staging), training=True)
        ds = stage_training_dataset(
            dump_config(cfg),
            name,
            smp_needed_by(cfg, training=True),
            layout.dataset(name),
            dataset_ref,
            names.dataset_title,
            resume_from,
        )
        k_dir = stage_training_kernel(
            layout.kernel(name),
            kernel_ref,
            names.kernel_title,
            dataset_ref,
            accelerator,
            resume_from,
        )
        result = Push(dataset_ref, kernel_ref, layout.run_dir(name))
        if not dry_run:
            result.quota = check_gpu_quota(cfg.budget_minutes)
        try:
            return publish(
                result, ds, k_dir, message, max_wait, dry_run, ("--accelerator", accelerator)
            )
        except KaggleError as e:
            said = str(e)
            if "not valid kernel sources" in said:
                raise KaggleError(
                    f"{said}: Kaggle took the kernel without --resume-from {resume_from}'s "
                    "output, so it stops at once (it continues no run); check the kernel's "
                    "name and push again",
                    e.kind,
                ) from None
            if "Kernel push error" not in said:  # network, credentials, rate limits: as they are
                raise
            raise KaggleError(
                f"{said}; the kernel asked for {accelerator}: choose another with "
                "--accelerator, and see your weekly GPU hours with `kaggle quota`",
                e.kind,
            ) from None


def check_gpu_quota(budget_minutes: float) -> str | None:
    """`kaggle quota`'s GPU row as 'used U of T, R left (refreshes ...)'; KaggleError when no
    GPU time is left, a warning when less than the run's budget is. None when the client or
    Kaggle gives no quota (older clients): the push then goes on."""
    try:
        out = run_kaggle(["quota", "--csv"]).stdout
    except KaggleError as e:
        if e.kind in ("network", "timeout", "rejected", "missing"):
            raise
        log.warning("warning: cannot read your GPU quota (%s); pushing anyway", e)
        return None
    rows = {r.get("resource"): r for r in csv.DictReader(io.StringIO(out.strip()))}
    gpu = rows.get("GPU")
    if gpu is None:
        return None
    left = float(gpu["remaining"].rstrip("h"))
    said = (
        f"used {gpu['used']} of {gpu['total']}, {gpu['remaining']} left "
        f"(refreshes {gpu.get('refreshAt') or 'weekly'})"
    )
    if left <= 0:
        raise KaggleError(f"no Kaggle GPU quota left this week: {said}", "quota")
    if budget_minutes and left * 60 < budget_minutes + MARGIN_MINUTES:
        log.warning(
            "warning: GPU quota %s is less than the run's budget_minutes=%g plus %d min",
            said,
            budget_minutes,
            MARGIN_MINUTES,
        )
    else:
        log.info("GPU quota: %s", said)
    return said


@dataclass
class FetchedRun:
    """What kernel-output brought back from a training kernel."""

    run: Path
    submission: Path
    status: TrainStatus


def fetch_output(
    run_dir: str | os.PathLike,
    ref: str,
    data: str | os.PathLike | None = None,
    sample: str | os.PathLike | None = None,
    folder: str | os.PathLike = SUBMISSIONS_DIR,
    staging: str | os.PathLike = STAGING,
) -> FetchedRun | Path:
    """`tgs kaggle kernel-output`: download kernel REF's output (once it is complete) to
    STAGING/<run>/output; a training kernel's (it has tgs-train.json) becomes the run RUN_DIR
    (`fetch_run`), an inference kernel's submission is kept beside its run (`kernel_output`)."""
    local = Run(run_dir)
    status = kernel_status(ref, staging=staging)  # a failed kernel raises with its log's end
    if status != "complete":
        raise KaggleError(
            f"kernel {ref} is {status}, not complete: python -m tgs kaggle kernel-status "
            f"{local.root} --wait"
        )
    layout = KaggleStaging(Path(staging))
    with run_lock(layout.run_dir(local.name)):  # one push or fetch of a run name at a time
        dest = download_output(ref, layout.output(local.name))
        if not (dest / TrainStatus.FILE).is_file():
            return kernel_output(run_dir, ref, sample, folder, staging, downloaded=dest)
        return fetch_run(local, ref, dest, data, sample, folder, staging)


def fetch_run(
    local: Run,
    ref: str,
    dest: Path,
    data: str | os.PathLike | None,
    sample: str | os.PathLike | None,
    folder: str | os.PathLike,
    staging: str | os.PathLike,
) -> FetchedRun:
    """A training kernel's downloaded output `dest` -> the run `local` (meta.json: where and on
    which GPU it trained, the data folder here) and its submission, validated, as
    FOLDER/<run>-kaggle-cv<CV>.csv with a manifest; an unfinished run is refused with what is
    missing and the command that continues it."""
    status = TrainStatus.read(dest / TrainStatus.FILE)
    remote = Run(dest / RUN)
    if not status.finished:
        raise TGSError(_unfinished(ref, status, remote, local, staging))
    data_dir, sample = _local_data(data, sample)
    n = validate_file(dest / SUBMISSION, sample)  # before anything is written here
    created = not local.root.exists()
    try:
        with run_lock(local.root):  # no `tgs run` starts on it while it is replaced
            _adopt(remote, local, ref, status, data_dir)
    except BaseException:
        if created and local.root.is_dir() and not local.exists():
            shutil.rmtree(local.root)  # only the lock file the refused copy made
        raise
    kept = _keep_submission(dest, local, ref, sample, folder, status, n)
    return FetchedRun(local.root, kept, status)


def _local_data(data, sample) -> tuple[Path, Path]:
    """(the competition folder here, its sample_submission.csv): `data` when given (checked),
    else the folder of the sample found in data/ or data/competition."""
    if data is None:
        found = find_sample(None, sample)
        return found.parent, found
    data = Path(data)
    if not (data / "train.csv").is_file() or not (data / "test").is_dir():
        raise TGSError(
            f"--data {data}: not a competition folder (train.csv, train/, test/); get one with "
            "python -m tgs kaggle download"
        )
    return data, Path(sample) if sample else data / "sample_submission.csv"


def _unfinished(ref: str, status: TrainStatus, remote: Run, local: Run, staging) -> str:
    """What an unfinished training kernel's output lacks, and the command that continues it."""
    why = (
        "it stopped at the session limit"
        if status.stopped_at_session_limit
        else f"tgs run exited with {status.exit_code}"
    )
    if not remote.exists():
        return f"kernel {ref} holds no run folder ({why}): push it again with tgs kaggle train"
    cfg = remote.config()
    folds = cfg.folds or list(range(cfg.n_folds))
    done = set(remote.finished_folds())
    missing = [
        f"fold {k} ({'started' if remote.started(k) else 'not started'})"
        for k in folds
        if k not in done
    ]
    if not remote.thresholds_path.is_file():
        missing.append(remote.thresholds_path.name)
    missing.append(SUBMISSION)
    again = ["python", "-m", "tgs", "kaggle", "train", "--config", str(remote.config_path)]
    again += ["--run", local.name, "--resume-from", ref]
    if str(staging) != str(STAGING):
        again[-2:-2] = ["--staging", str(staging)]
    return (
        f"kernel {ref} did not finish its run ({why}): missing {', '.join(missing)}; "
        f"continue it in a new session: {shlex.join(again)}"
    )


def _adopt(remote: Run, local: Run, ref: str, status: TrainStatus, data: Path) -> None:
    """Copy the kernel's run folder to `local` atomically, replacing only an earlier copy of a
    Kaggle-trained run, and say in meta.json where it trained and where its data is here."""
    occupied = local.root.exists() and any(p.name != LOCK_FILE for p in local.root.iterdir())
    if occupied and not (local.exists() and local.meta().get("trained_on")):
        raise TGSError(
            f"{local.root} exists and is not a run brought back from Kaggle (a run trained "
            f"here, or another folder): name another run folder for kernel {ref}"
        )
    with atomic_dir(local.root, overwrite=True) as tmp:
        shutil.copytree(remote.root, tmp, dirs_exist_ok=True)
        (tmp / LOCK_FILE).unlink(missing_ok=True)  # the kernel's session is over
        copy = Run(tmp)
        meta = copy.meta()
        meta["trained_on"] = {
            "where": "kaggle",
            "kernel": ref,
            "gpu": status.gpu,
            "seconds": status.seconds,
            "resumed": status.resumed,
            "kernel_data": meta.get("data"),
            "fetched": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        meta["data"] = str(data.resolve())  # predict, report, blend and pseudo read data here
        write_json(copy.meta_path, meta)


def _keep_submission(
    dest: Path, local: Run, ref: str, sample: Path, folder, status: TrainStatus, n: int
) -> Path:
    """The kernel's submission.csv (validated by the caller: `n` images) as
    FOLDER/<run>-kaggle-cv<CV>.csv with the kernel's predict manifest pointed at the local run
    (`made: kaggle-train`)."""
    got = dest / SUBMISSION
    th = local.thresholds()
    path = local.kernel_submission_path(th.require_cv(local.thresholds_path), folder, "kaggle")
    made = dest / "submissions" / Manifest.path_for(status.submission or SUBMISSION).name
    base = Manifest.read(made) if made.is_file() else Manifest(submission=SUBMISSION)
    return keep_submission(got, path, base, local, th, n, ref, dest, sample, made=MADE)
