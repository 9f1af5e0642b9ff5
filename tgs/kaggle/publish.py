"""Pushing to Kaggle: the first-use checks made before anything is uploaded (credentials, the
client's version, the competition's rules, the GPU quota), the staged dataset created or
versioned and waited for until Kaggle shows the version just made ready (its number, from
`kaggle datasets status --format json`), then the kernel pushed; each way Kaggle can refuse a
push named with what to do."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tgs import COMPETITION
from tgs.kaggle.client import (
    RULES_URL,
    KaggleError,
    find_credentials,
    poll,
    require_client,
    run_kaggle,
)
from tgs.kaggle.limits import MARGIN_MINUTES, PHONE_NOTE

log = logging.getLogger(__name__)
FAILED = ("failed", "deleted")  # `datasets status` of a version that will never be ready
_PASSED_ON = ("network", "timeout", "rejected", "missing", "credentials", "client")


@dataclass
class Push:
    """What push-kernel or `tgs kaggle train` staged and ran (or, dry, would run), and what the
    kernel asks of Kaggle (its refusal is named with it)."""

    dataset_ref: str
    kernel_ref: str
    staged: Path
    commands: list[list[str]] = field(default_factory=list)
    kernel_url: str | None = None
    quota: str | None = None  # the GPU quota `kaggle quota` reported before a GPU push
    dataset_version: int | None = None  # the dataset version the kernel was pushed with
    gpu: bool = False
    internet: bool = False
    accelerator: str | None = None
    resume_from: str | None = None


@dataclass
class DatasetState:
    """`kaggle datasets status REF --format json`: the latest version's processing status
    (ready, blobs_received, failed...) and number (None when Kaggle gives none: versions
    count from 1)."""

    status: str
    version: int | None

    def __str__(self) -> str:
        return f"version {self.version if self.version is not None else '?'} {self.status}"


def status_command(ref: str) -> list[str]:
    return ["datasets", "status", ref, "--format", "json"]


def dataset_state(ref: str) -> DatasetState | None:
    """The dataset's latest version as Kaggle shows it now; None when it does not exist (yet:
    a new dataset is not found for a while)."""
    try:
        out = run_kaggle(status_command(ref)).stdout
    except KaggleError as e:
        if e.kind != "not_found":
            raise
        return None
    line = next((ln for ln in reversed(out.splitlines()) if ln.strip().startswith("{")), None)
    try:
        data = json.loads(line or "")
    except ValueError:
        raise KaggleError(
            f"cannot read the dataset status the kaggle client printed: {out!r}"
        ) from None
    number = data.get("current_version_number")  # the client says 0 when Kaggle gives none
    version = number if isinstance(number, int) and number > 0 else None
    return DatasetState(str(data.get("status", "")).lower(), version)


def wait_dataset_version(
    ref: str, at_least: int, max_wait: float = 1800.0, first: float = 5.0
) -> DatasetState:
    """Poll (with backoff) until Kaggle shows version `at_least` (or later) of `ref` ready.
    Kaggle's status right after an upload can still be the previous version's "ready"; only
    the version number tells them apart (when Kaggle gives none, "ready" is taken, with a
    warning: the kernel's stage id check is then what guards)."""
    seen: list[DatasetState | None] = []

    def check() -> DatasetState | None:
        state = dataset_state(ref)
        seen.append(state)
        if state is not None and state.status in FAILED:
            raise KaggleError(f"Kaggle dataset {ref} {state}: push again")
        if state is None or state.status != "ready":
            return None
        if state.version is None:
            log.warning("warning: Kaggle gives no version number for %s: taking 'ready'", ref)
            return state
        return state if state.version >= at_least else None

    found = poll(check, first, max_wait)
    if found is None:
        shows = seen[-1] if seen and seen[-1] is not None else "no version yet"
        raise KaggleError(
            f"dataset {ref}: Kaggle does not show version {at_least} ready after "
            f"{max_wait:.0f}s (it shows {shows}); the kernel was not pushed (it would have "
            "trained what the older version holds): push again later, or allow longer with "
            "--max-wait",
            "timeout",
        )
    return found


def check_rules() -> None:
    """Whether the account may use the competition's data: listing the competition's files has
    worked without its rules accepted (Kaggle/kaggle-cli#87), downloading one has not (403), so
    tgs downloads one small file, sample_submission.csv, to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="tgs-rules-") as tmp:
        args = ["competitions", "download", "-c", COMPETITION, "-f", "sample_submission.csv"]
        try:
            run_kaggle([*args, "-p", tmp, "-q"])
        except KaggleError as e:
            if e.kind != "forbidden":
                raise
            raise KaggleError(
                f"the competition's rules are not accepted on this Kaggle account (403 from "
                f"`kaggle competitions download`: {e.said}): accept them at {RULES_URL} (signed "
                "in as the account of these credentials), then push again; without them Kaggle "
                "attaches no competition data to a kernel",
                "rules",
                e.said,
            ) from None


def check_gpu_quota(budget_minutes: float) -> str | None:
    """`kaggle quota`'s GPU row as 'used U of T, R left (refreshes ...)'; KaggleError when no
    GPU time is left, a warning when less than the run's budget is. None when Kaggle gives no
    quota: the push then goes on."""
    try:
        out = run_kaggle(["quota", "--csv"]).stdout
    except KaggleError as e:
        if e.kind in _PASSED_ON:
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


def first_use(push: Push, budget_minutes: float = 0.0) -> None:
    """Before anything is uploaded: credentials, the client's version, the competition's rules
    and, for a GPU kernel, the quota (kept in `push.quota`)."""
    find_credentials()
    require_client()
    check_rules()
    if push.gpu:
        push.quota = check_gpu_quota(budget_minutes)


def publish(
    push: Push,
    ds_dir: Path,
    k_dir: Path,
    *,
    message: str,
    max_wait: float,
    dry_run: bool = False,
    first: float = 5.0,
) -> Push:
    """Create (or version) the staged dataset `ds_dir` as `push.dataset_ref`, wait until Kaggle
    shows the version just made ready, then `kaggle kernels push -p K_DIR` (with
    --accelerator); fills `push.commands` (all four when `dry_run`, which calls nothing),
    `push.dataset_version` and `push.kernel_url`. `first`: the first wait between polls."""
    ref = push.dataset_ref
    create = ["datasets", "create", "-p", str(ds_dir), "--dir-mode", "zip"]
    version = ["datasets", "version", "-p", str(ds_dir), "-m", message, "--dir-mode", "zip"]
    command = ["kernels", "push", "-p", str(k_dir)]
    command += ["--accelerator", push.accelerator] if push.accelerator else []
    if dry_run:
        push.commands = [status_command(ref), create, version, command]
        return push
    require_client()
    before = dataset_state(ref)
    if before is not None and before.status not in ("ready", *FAILED):  # a version now: 403
        log.info("dataset %s: %s; waiting until it is ready before a new version", ref, before)
        before = wait_dataset_version(ref, before.version or 0, max_wait, first)
    upload = create if before is None else version
    log.info("uploading %s to Kaggle dataset %s", ds_dir, ref)
    try:
        run_kaggle(upload, progress=True)
    except KaggleError as e:
        if e.kind != "forbidden" or upload is not version:
            raise
        raise _upload_refused(e, ref) from None
    made = 1 if before is None else (before.version or 0) + 1
    push.dataset_version = wait_dataset_version(ref, made, max_wait, first).version
    try:
        out = run_kaggle(command, progress=True)
    except KaggleError as e:
        raise push_refused(e, push) from None
    url = re.search(r"(https://\S*kaggle\.com/\S+)", out.stdout)
    push.commands = [status_command(ref), upload, command]
    push.kernel_url = url.group(1) if url else None
    return push


def _upload_refused(e: KaggleError, ref: str) -> KaggleError:
    """A 403 on `datasets version`: the latest version still processing, or not yours."""
    try:
        now = dataset_state(ref)
    except KaggleError:
        now = None
    return KaggleError(
        f"Kaggle refused a new version of dataset {ref} (403 from `kaggle datasets version`: "
        f"{e.said}). Kaggle answers this while the dataset's latest version is still "
        f"processing (a push moments ago, from here or elsewhere; now: {now or 'unknown'}), "
        "and for a dataset of another account: wait until `kaggle datasets status "
        f"{ref}` says ready and push again, or check that {ref.split('/')[0]} is you",
        "forbidden",
        e.said,
    )


def push_refused(e: KaggleError, push: Push) -> KaggleError:
    """What `kaggle kernels push` failing means, and what to do: each invalid source on its
    own (Kaggle still created the kernel; it stops in its first seconds), else Kaggle refused
    the kernel (the accelerator; GPU and internet need a phone-verified account)."""
    said, kind = str(e), e.kind
    if "not valid competition sources" in said:
        return KaggleError(
            f"{said}: Kaggle did not attach the competition {COMPETITION}: its rules are not "
            f"accepted on this account. Accept them at {RULES_URL} and push again (the kernel "
            "Kaggle created anyway stops at once: it finds no competition data)",
            "rules",
            e.said,
        )
    if "not valid dataset sources" in said:
        return KaggleError(
            f"{said}: Kaggle did not attach the staged dataset {push.dataset_ref} (not yours, "
            f"or not ready: `kaggle datasets status {push.dataset_ref}`); push again (the "
            "kernel Kaggle created anyway stops at once: it finds no staged dataset)",
            kind,
            e.said,
        )
    if "not valid kernel sources" in said:
        return KaggleError(
            f"{said}: Kaggle did not attach --resume-from {push.resume_from}'s output, so the "
            "kernel stops at once (it continues no run); check the kernel's name and push again",
            kind,
            e.said,
        )
    if kind in _PASSED_ON:  # network, credentials, timeouts: as they are
        return e
    hints = []
    if push.accelerator:
        hints.append(
            f"the kernel asked for {push.accelerator}: choose another with --accelerator, and "
            "see your weekly GPU hours with `kaggle quota`"
        )
    if push.gpu or push.internet:
        asked = " and ".join(
            w for w, on in (("a GPU", push.gpu), ("the internet", push.internet)) if on
        )
        hints.append(f"the kernel asked for {asked}: {PHONE_NOTE}")
    return KaggleError(
        f"Kaggle refused the kernel: {said}" + "".join(f"; {h}" for h in hints), kind, e.said
    )
