"""`tgs kaggle kernel-output`: a kernel's output brought back. A training kernel's becomes a
local run folder (only when every file its records name came: each checkpoint thresholds.json
lists, each fold's summary and OOF) and its submission, with a manifest (`made: kaggle-train`);
an unfinished run (stopped at the session limit, or the kernel ended in error) is refused with
what is missing and the command that continues it. An inference kernel's submission is kept
beside its run (`kernels.kernel_output`)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tgs.core import commands
from tgs.core.errors import TGSError
from tgs.core.fileio import atomic_dir
from tgs.kaggle.client import KaggleError, require_client
from tgs.kaggle.competition import find_sample
from tgs.kaggle.kernels import (
    STAGING,
    download_output,
    keep_submission,
    kernel_output,
    kernel_state,
    kernel_status,
    kernel_submission_path,
    staged_training,
)
from tgs.kaggle.limits import MIN_CLIENT
from tgs.kaggle.mounts import RUN
from tgs.kaggle.stage import SUBMISSION
from tgs.predict.submission import validate_file
from tgs.run.folder import Run
from tgs.run.lock import LOCK_FILE, run_lock
from tgs.run.records import SUBMISSIONS_DIR, KaggleStaging, Manifest, TrainedOn, TrainStatus

log = logging.getLogger(__name__)
MADE = "kaggle-train"  # the manifest's `made` of a submission a training kernel wrote
STATUS = TrainStatus.FILE
_LISTING = (
    "; Kaggle lists a kernel's output 20 files a page, and kaggle clients older than "
    f"{MIN_CLIENT} download only the first page (see `kaggle --version`): run kernel-output again"
)


@dataclass(frozen=True)
class FetchedRun:
    """What kernel-output brought back: the submission kept, and from a training kernel its
    run folder here and how far it got (`run`, `status`: None for an inference kernel's)."""

    submission: Path
    run: Path | None = None
    status: TrainStatus | None = None


def fetch_output(
    run_dir: str | os.PathLike,
    ref: str,
    *,
    data: str | os.PathLike | None = None,
    sample: str | os.PathLike | None = None,
    folder: str | os.PathLike = SUBMISSIONS_DIR,
    staging: str | os.PathLike = STAGING,
) -> FetchedRun:
    """`tgs kaggle kernel-output`: download kernel REF's output (once it is complete) to
    STAGING/<run>/output; a training kernel's (staged here as one, or its output has
    tgs-train.json or run/) becomes the run RUN_DIR (`fetch_run`), an inference kernel's
    submission is kept beside its run (`kernel_output`). A kernel that ended in error with a
    run in its output (Kaggle stops a kernel at its time limit that way) is refused with what
    its run lacks and the command that continues it."""
    local = Run(run_dir)
    require_client()  # an older client would bring back the listing's first page only
    status, failure = kernel_state(ref)
    if status not in ("complete", "error"):
        raise KaggleError(
            f"kernel {ref} is {status}, not complete: {commands.kernel_status(local.root)}"
        )
    layout = KaggleStaging(Path(staging))
    with run_lock(layout.run_dir(local.name)):  # one push or fetch of a run name at a time
        dest = download_output(ref, layout.output(local.name))
        if status == "error":
            remote = Run(dest / RUN)
            if not remote.exists():
                kernel_status(ref, staging=staging)  # raises: Kaggle's message, the log's end
            why = f"Kaggle ended it in error ({failure or 'no message'})"
            raise TGSError(_unfinished(ref, why, remote, local, staging))
        training = (dest / STATUS).is_file() or (dest / RUN).is_dir()
        if not (training or staged_training(ref, staging)):
            kept = kernel_output(
                run_dir, ref, sample=sample, folder=folder, staging=staging, downloaded=dest
            )
            return FetchedRun(submission=kept)
        return fetch_run(local, ref, dest, data=data, sample=sample, folder=folder, staging=staging)


def fetch_run(
    local: Run,
    ref: str,
    dest: Path,
    *,
    data: str | os.PathLike | None,
    sample: str | os.PathLike | None,
    folder: str | os.PathLike,
    staging: str | os.PathLike,
) -> FetchedRun:
    """A training kernel's downloaded output `dest` -> the run `local` (meta.json: where and on
    which GPU it trained, the data folder here) and its submission, validated, as
    FOLDER/<run>-kaggle-cv<CV>.csv with a manifest; an unfinished run is refused with what is
    missing and the command that continues it, an incomplete download with what it lacks."""
    if not (dest / STATUS).is_file():
        raise TGSError(f"kernel {ref}'s output, in {dest}, has no {STATUS}{_LISTING}")
    status = TrainStatus.read(dest / STATUS)
    remote = Run(dest / RUN)
    if not status.finished:
        why = (
            "it stopped at the session limit"
            if status.stopped_at_session_limit
            else f"tgs run exited with {status.exit_code}"
        )
        raise TGSError(_unfinished(ref, why, remote, local, staging))
    lacking = missing_files(remote, dest, status)
    if lacking:
        raise TGSError(
            f"kernel {ref}'s output, in {dest}, lacks files its records name: "
            f"{', '.join(lacking)}{_LISTING}"
        )
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
    kept = _keep_submission(
        dest, local, ref, sample=sample, folder=folder, status=status, n_images=n
    )
    return FetchedRun(submission=kept, run=local.root, status=status)


def missing_files(remote: Run, dest: Path, status: TrainStatus) -> list[str]:
    """The files a finished run's records name that `dest` (its downloaded output) lacks: the
    run's config, meta and thresholds, each checkpoint thresholds.json lists, each fold's
    summary and OOF, the submission (relative to `dest`)."""
    records = [remote.paths.config, remote.paths.meta, remote.paths.thresholds]
    files = [p for p in records if not p.is_file()]
    if not files:
        th, cfg = remote.thresholds(), remote.config()
        folds = th.folds or cfg.folds or list(range(cfg.n_folds))
        files = [remote.root / m for m in th.models or []]
        files += [f for k in folds for f in (remote.fold(k).summary, remote.fold(k).oof)]
    files += [dest / SUBMISSION]
    files += [dest / SUBMISSIONS_DIR / status.submission] if status.submission else []
    return [p.relative_to(dest).as_posix() for p in files if not p.is_file()]


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
            f"{commands.kaggle_download()}"
        )
    return data, Path(sample) if sample else data / "sample_submission.csv"


def _unfinished(ref: str, why: str, remote: Run, local: Run, staging) -> str:
    """What an unfinished training kernel's output lacks (it stopped: `why`), and the command
    that continues it."""
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
    if not remote.paths.thresholds.is_file():
        missing.append(remote.paths.thresholds.name)
    missing.append(SUBMISSION)
    own = None if str(staging) == str(STAGING) else staging
    again = commands.kaggle_train(remote.paths.config, local.name, resume_from=ref, staging=own)
    return (
        f"kernel {ref} did not finish its run ({why}): missing {', '.join(missing)}; "
        f"continue it in a new session: {again}"
    )


def _adopt(remote: Run, local: Run, ref: str, status: TrainStatus, data: Path) -> None:
    """Copy the kernel's run folder to `local` atomically, replacing only an earlier copy of a
    Kaggle-trained run, and say in meta.json where it trained and where its data is here."""
    occupied = local.root.exists() and any(p.name != LOCK_FILE for p in local.root.iterdir())
    if occupied and not (local.exists() and local.metadata().trained_on):
        raise TGSError(
            f"{local.root} exists and is not a run brought back from Kaggle (a run trained "
            f"here, or another folder): name another run folder for kernel {ref}"
        )
    with atomic_dir(local.root, overwrite=True) as tmp:
        shutil.copytree(remote.root, tmp, dirs_exist_ok=True)
        (tmp / LOCK_FILE).unlink(missing_ok=True)  # the kernel's session is over
        copy = Run(tmp)
        meta = copy.metadata()
        trained = TrainedOn(
            where="kaggle",
            kernel=ref,
            gpu=status.gpu,
            seconds=status.seconds,
            resumed=status.resumed,
            kernel_data=meta.data,
            fetched=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        # predict, report, blend and pseudo read the data folder here
        copy.write(replace(meta, trained_on=trained, data=str(data.resolve())))


def _keep_submission(
    dest: Path, local: Run, ref: str, *, sample: Path, folder, status: TrainStatus, n_images: int
) -> Path:
    """The kernel's submission.csv (validated by the caller: `n_images` images) as
    FOLDER/<run>-kaggle-cv<CV>.csv with the kernel's predict manifest pointed at the local run
    (`made: kaggle-train`)."""
    got = dest / SUBMISSION
    th = local.thresholds()
    cv = th.require_cv(local.paths.thresholds)
    path = kernel_submission_path(local, cv, folder, tag="kaggle")
    made = dest / SUBMISSIONS_DIR / Manifest.path_for(status.submission or SUBMISSION).name
    base = Manifest.read(made) if made.is_file() else Manifest(submission=SUBMISSION)
    return keep_submission(
        got,
        path,
        base=base,
        run=local,
        th=th,
        n_images=n_images,
        ref=ref,
        dest=dest,
        sample=sample,
        changes={"made": MADE},
    )
