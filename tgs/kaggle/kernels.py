"""A run on Kaggle: push it as a dataset + an offline inference kernel, follow the kernel, and
fetch its submission.csv (validated, with a manifest linking it to the run)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

from tgs.core import commands
from tgs.core.fileio import atomic_path
from tgs.kaggle.client import (
    KaggleError,
    kaggle_user,
    poll,
    require_client,
    run_kaggle,
)
from tgs.kaggle.competition import find_sample
from tgs.kaggle.inference_kernel import read_kernel_manifest
from tgs.kaggle.limits import KERNEL_WAIT_HOURS
from tgs.kaggle.publish import Push, first_use, publish
from tgs.kaggle.stage import (
    KERNEL_LOG,
    SUBMISSION,
    TRAIN_SCRIPT,
    kaggle_names,
    new_stage_id,
    stage_dataset,
    stage_kernel,
)
from tgs.predict.submission import validate_file
from tgs.run.folder import Run
from tgs.run.lock import run_lock
from tgs.run.records import (
    KAGGLE_STAGING_DIR,
    SUBMISSIONS_DIR,
    KaggleStaging,
    Manifest,
    Thresholds,
)

log = logging.getLogger(__name__)
STAGING = KAGGLE_STAGING_DIR
KERNEL_DONE = ("complete", "error", "cancel_acknowledged", "cancel_requested")
WAIT_SECONDS = KERNEL_WAIT_HOURS * 3600.0  # kernel-status --wait's default --max-wait


def push_kernel(
    run_dir: str | os.PathLike,
    *,
    username: str | None = None,
    dataset_slug: str | None = None,
    kernel_title: str | None = None,
    gpu: bool = False,
    dry_run: bool = False,
    message: str = "tgs push-kernel",
    staging: str | os.PathLike = STAGING,
    max_wait: float = 1800.0,
    poll_seconds: float = 5.0,
) -> Push:
    """Check what a first use needs (credentials, client, the competition's rules, the GPU
    quota with `gpu`), stage RUN as a dataset and an inference kernel, create or version the
    dataset (upload progress shown), wait until Kaggle shows that version ready (polls from
    `poll_seconds`, at most `max_wait`), and push the kernel. With `dry_run` only stage."""
    run = Run(run_dir).require()
    user = kaggle_user(username, dry_run)
    names = kaggle_names(run.name, dataset_slug, kernel_title)
    dataset_ref, kernel_ref = f"{user}/{names.dataset_slug}", f"{user}/{names.kernel_slug}"
    layout = KaggleStaging(Path(staging))
    result = Push(dataset_ref, kernel_ref, layout.run_dir(run.name), gpu=gpu)
    if not dry_run:
        first_use(result)
    with run_lock(layout.run_dir(run.name)):  # one push or fetch of a run name at a time
        stage_id = new_stage_id()
        ds_dir = stage_dataset(
            run, layout.dataset(run.name), dataset_ref, names.dataset_title, stage_id=stage_id
        )
        k_dir = stage_kernel(
            layout.kernel(run.name),
            kernel_ref,
            names.kernel_title,
            dataset_ref,
            gpu,
            stage_id=stage_id,
        )
        return publish(
            result,
            ds_dir,
            k_dir,
            message=message,
            max_wait=max_wait,
            dry_run=dry_run,
            first=poll_seconds,
        )


def kernel_ref(
    run_dir: str | os.PathLike,
    kernel: str | None = None,
    username: str | None = None,
    title: str | None = None,
    staging: str | os.PathLike = STAGING,
) -> str:
    """The run's kernel: `kernel`, else the id push-kernel or `tgs kaggle train` staged for a
    run of this name (the run folder need not exist yet), else the default inference name."""
    run = Run(run_dir)
    if kernel:
        if not re.match(r"^[^/\s]+/[^/\s]{5,}$", kernel):
            raise KaggleError(f"--kernel {kernel!r}: expected OWNER/KERNEL-SLUG")
        return kernel
    staged = staged_kernel(run.name, staging)
    if staged and not (username or title):
        return json.loads(staged[0].read_text())["id"]
    run.require()
    return f"{kaggle_user(username)}/{kaggle_names(run.name, title=title).kernel_slug}"


def staged_kernel(run_name: str, staging: str | os.PathLike = STAGING) -> tuple[Path, bool] | None:
    """The kernel-metadata.json last staged for `run_name` (push-kernel's inference kernel or
    `tgs kaggle train`'s, the newer when both are) and whether it is the training kernel's."""
    found = [
        (p.stat().st_mtime, p, training)
        for training in (False, True)
        if (p := KaggleStaging(Path(staging), training).kernel_metadata(run_name)).is_file()
    ]
    return max(found)[1:] if found else None


def staged_training(ref: str, staging: str | os.PathLike = STAGING) -> bool:
    """Whether `ref` is a training kernel `tgs kaggle train` staged here (its metadata's id)."""
    for meta in Path(staging).glob("*/train/kernel/kernel-metadata.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("id") == ref and data.get("code_file") == TRAIN_SCRIPT:
            return True
    return False


def download_output(ref: str, dest: Path, pattern: str | None = None) -> Path:
    """`kaggle kernels output REF` into an emptied `dest` (its log as <slug>.log): every page
    of the listing (the client must be >= 2.2.2); `pattern`: only the files it matches."""
    require_client()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    only = ["--file-pattern", pattern] if pattern else []
    run_kaggle(["kernels", "output", ref, "-p", str(dest), "-o", *only], progress=not pattern)
    return dest


def kernel_state(ref: str) -> tuple[str, str | None]:
    """(status, Kaggle's failure message) of kernel `ref`; a missing kernel is named."""
    try:
        out = run_kaggle(["kernels", "status", ref]).stdout
    except KaggleError as e:
        if e.kind != "not_found":
            raise
        raise KaggleError(
            f"no kernel {ref} on Kaggle: push it ({commands.push_kernel()}) or name "
            "it with --kernel OWNER/SLUG",
            "not_found",
        ) from None
    found = re.search(r'has status "([^"]+)"', out)
    if not found:
        raise KaggleError(f"cannot read the status the kaggle client printed for {ref}: {out!r}")
    status = found.group(1).rsplit(".", 1)[-1].lower()  # KernelWorkerStatus.COMPLETE -> complete
    failure = re.search(r'Failure message: "(.*)"', out)
    return status, failure.group(1) if failure else None


def _hours(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def kernel_status(
    ref: str,
    *,
    wait: bool = False,
    poll_seconds: float = 30.0,
    max_wait: float = WAIT_SECONDS,
    staging: str | os.PathLike = STAGING,
    sleep=None,
) -> str:
    """The kernel's status (queued, running, complete, error...); with `wait` poll with backoff
    (at most 5 min apart) until it finishes or `max_wait` seconds pass (default 13 h: a 12-hour
    session and the queue), a progress line at each poll. KaggleError when the kernel failed."""
    seen: list[str] = []
    start, slept = time.monotonic(), [0.0]

    def nap(seconds: float) -> None:
        slept[0] += seconds
        (sleep or time.sleep)(seconds)

    def check() -> str | None:
        status, failure = kernel_state(ref)
        if wait and status not in KERNEL_DONE:  # the final status is the caller's to show
            followed = _hours(max(time.monotonic() - start, slept[0]))
            log.info(
                "kernel %s: %s (followed %s of at most %s)", ref, status, followed, _hours(max_wait)
            )
        seen.append(status)
        if status == "error":
            tail = _log_tail(ref, staging)
            raise KaggleError(f"kernel {ref} failed: {failure or 'no message'}{tail}")
        return status if (status in KERNEL_DONE or not wait) else None

    found = poll(check, poll_seconds, max_wait if wait else 0.0, sleep=nap)
    if found is None:
        log.warning("warning: kernel %s still %s after %s", ref, seen[-1], _hours(max_wait))
    return found or seen[-1]


def _log_tail(ref: str, staging: str | os.PathLike = STAGING, lines: int = 15) -> str:
    """The last lines of a failed kernel's log (fetched without its output files) and where
    the whole log goes, as the end of an error message."""
    dest = KaggleStaging(Path(staging)).log()
    fetch = ["kernels", "output", ref, "-p", str(dest), "-o"]
    log_file, text = dest / f"{ref.split('/')[-1]}.log", ""
    try:  # a pattern no file matches: only the log comes
        log_file.unlink(missing_ok=True)
        run_kaggle([*fetch, "--file-pattern", "^$"])
        text = kernel_log_text(log_file.read_text()) if log_file.is_file() else ""
    except (KaggleError, OSError) as e:
        log.debug("kernel log not fetched: %s", e)
    tail = "\n".join("  | " + ln for ln in text.splitlines()[-lines:])
    where = f"{log_file}" if text else f"kaggle {' '.join(fetch)}"
    return (f"; its log ends:\n{tail}\n" if tail else "; ") + f"the whole log: {where}"


def kernel_log_text(raw: str) -> str:
    """A kernel log as text: Kaggle's JSON list of {stream_name, data} entries joined, or the
    text itself when it is not that list."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(entries, list):
        return raw
    return "".join(str(e.get("data", "")) for e in entries if isinstance(e, dict))


def kernel_output(
    run_dir: str | os.PathLike,
    ref: str,
    *,
    sample: str | os.PathLike | None = None,
    folder: str | os.PathLike = SUBMISSIONS_DIR,
    staging: str | os.PathLike = STAGING,
    downloaded: Path | None = None,
) -> Path:
    """Download the inference kernel's output (unless `downloaded` holds it), validate its
    submission.csv against sample_submission and keep it as submissions/<run>-kernel-cv<CV>.csv
    with a manifest linking it to the run: the kernel's own (from its log, as predict wrote it)
    with the kernel and the run's config."""
    run = Run(run_dir).require()
    th, cfg = run.thresholds(), run.config()
    dest = downloaded or download_output(ref, KaggleStaging(Path(staging)).output(run.name))
    got = dest / SUBMISSION
    if not got.is_file():
        files = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise KaggleError(
            f"kernel {ref} has no {SUBMISSION} in its output ({files}); is it finished? "
            f"{commands.kernel_status(run.root)}"
        )
    sample = find_sample(None, sample, (run.metadata().data,))
    n = validate_file(got, sample)
    made = read_kernel_manifest(dest / KERNEL_LOG) or Manifest(submission=SUBMISSION)
    expected = run.prediction_models(th)
    if made.models and made.models != expected:
        log.warning("warning: the kernel predicted with %s, not %s", made.models, expected)
    path = kernel_submission_path(run, th.require_cv(run.paths.thresholds), folder)
    created = made.created or time.strftime("%Y-%m-%d %H:%M:%S")
    return keep_submission(
        got,
        path,
        base=made,
        run=run,
        th=th,
        n_images=n,
        ref=ref,
        dest=dest,
        sample=sample,
        changes={"config": cfg.to_dict(), "created": created},
    )


def kernel_submission_path(
    run: Run, cv: float, folder: str | os.PathLike = SUBMISSIONS_DIR, *, tag: str = "kernel"
) -> Path:
    """FOLDER/<run>-<tag>-cv<CV>.csv: where a kernel's submission of `run` is kept (`tag`
    "kaggle": a training kernel's)."""
    return Path(folder) / f"{run.name}-{tag}-cv{cv:.4f}.csv"


def keep_submission(
    got: Path,
    path: Path,
    *,
    base: Manifest,
    run: Run,
    th: Thresholds,
    n_images: int,
    ref: str,
    dest: Path,
    sample: Path,
    changes: dict | None = None,
) -> Path:
    """Copy a kernel's validated submission `got` to `path` atomically and write its manifest:
    `base` (what the kernel's predict recorded) pointed at the local `run`, with the thresholds,
    the kernel, its downloaded output `dest`, the data folder of `sample` and `changes` (more
    manifest fields)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a full disk leaves no half-copied submission
        shutil.copyfile(got, tmp)
    manifest = replace(
        base,
        submission=path.name,
        run=str(run.root),
        data=str(sample.parent),  # where `tgs kaggle submit` finds sample_submission.csv
        cv=th.cv,
        thresholds=th,
        n_images=n_images,
        kernel=ref,
        kernel_output=str(dest),
        **(changes or {}),
    )
    manifest.write(Manifest.path_for(path))
    return path
