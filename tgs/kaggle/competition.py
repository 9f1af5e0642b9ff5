"""Competition round trip through the `kaggle` client: download, submit (and wait for the
score), and the submissions list joined with local manifests (`tgs/kaggle_cli.py` runs the
client; `tgs/kaggle_kernel.py` pushes and follows kernels)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from tgs import COMPETITION
from tgs.core import commands
from tgs.core.errors import TGSError
from tgs.data.prepare import prepare
from tgs.kaggle.client import (
    KaggleError,
    poll,
    run_kaggle,
)
from tgs.predict.submission import validate_file
from tgs.run.records import SUBMISSIONS_DIR, KaggleScore, Manifest

log = logging.getLogger(__name__)
DEFAULT_DATA = ("data", "data/competition")
SUBMISSION_COLUMNS = ["fileName", "date", "description", "status", "publicScore", "privateScore"]


def download(out: str | os.PathLike, force: bool = False) -> Path:
    """Download the competition zip and unpack it into `out` like `tgs prepare`; the download
    folder is removed whatever happens."""
    out = Path(out)
    staging = out.parent / f".{out.name}.download"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        run_kaggle(
            ["competitions", "download", "-c", COMPETITION, "-p", str(staging)], progress=True
        )
        zip_path = staging / f"{COMPETITION}.zip"
        if not zip_path.is_file():
            raise KaggleError(f"kaggle reported success but {zip_path} is missing")
        prepare(zip_path, out, force=force)
        shutil.move(str(zip_path), out / zip_path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def parse_submissions(text: str) -> pd.DataFrame:
    """The CSV `kaggle competitions submissions --csv` prints, whatever lines come before it."""
    header = re.search(r"^(?:ref,)?fileName,", text, re.M)
    if header is None:
        if not text.strip() or re.search(r"^No submissions", text, re.M):
            return pd.DataFrame(columns=["ref", *SUBMISSION_COLUMNS])
        raise KaggleError(f"cannot read the submissions list the kaggle client printed: {text!r}")
    return pd.read_csv(io.StringIO(text[header.start() :]), dtype=str, keep_default_na=False)


def submissions() -> pd.DataFrame:
    """The competition's submissions, newest first (ref, fileName, date, status, scores...)."""
    out = run_kaggle(["competitions", "submissions", "-c", COMPETITION, "--csv"])
    return parse_submissions(out.stdout)


def _status(value: str) -> str:
    v = value.lower()
    return "complete" if "complete" in v else "error" if "error" in v else "pending"


def _scored(rows: pd.DataFrame, file: str, score: KaggleScore) -> KaggleScore | None:
    """The submission `score` of `file` with its result once Kaggle has scored it (None while
    pending)."""
    if score.ref and "ref" in rows:
        mine = rows[rows["ref"] == score.ref]
    else:
        mine = rows[(rows["fileName"] == file) & (rows["description"] == score.message)]
    if not len(mine) or _status(mine.iloc[0]["status"]) == "pending":
        return None
    row = mine.iloc[0]
    return replace(
        score,
        status=_status(row["status"]),
        public=row.get("publicScore") or None,
        private=row.get("privateScore") or None,
    )


def submit(
    path: str | os.PathLike,
    message: str,
    sample: str | os.PathLike | None,
    *,
    wait: bool = False,
    poll_seconds: float = 30.0,
    max_wait: float = 3600.0,
) -> KaggleScore:
    """Validate (against `sample`, else the sample_submission.csv `find_sample` finds), submit
    (recorded in the manifest at once), and with `wait` poll with backoff until scored or
    `max_wait` seconds; the scores go into the manifest."""
    path = Path(path)
    sample = find_sample(path, sample)
    validate_file(path, sample)  # refuses an invalid file before anything is uploaded
    out = run_kaggle(
        ["competitions", "submit", "-c", COMPETITION, "-f", str(path), "-m", message],
        progress=True,
    )
    ref = re.search(r"^Submission ref: (\d+)", out.stdout, re.M)
    score = KaggleScore(
        message=message,
        submitted=time.strftime("%Y-%m-%d %H:%M:%S"),
        status="pending",
        ref=ref.group(1) if ref else None,
    )
    index = _record_in_manifest(path, score)
    if wait:
        log.info("waiting for the score (at most %.0fs; Ctrl-C stops waiting only)", max_wait)
        scored = poll(lambda: _scored(submissions(), path.name, score), poll_seconds, max_wait)
        if scored is None:
            log.warning(
                "warning: not scored after %.0fs; see later: %s",
                max_wait,
                commands.kaggle_submissions(),
            )
        score = scored or score
        _record_in_manifest(path, score, index)
    return score


def _record_in_manifest(path: Path, score: KaggleScore, index: int | None = None) -> int:
    """Append (or replace entry `index` of) the manifest's Kaggle records; returns the index."""
    at = Manifest.path_for(path)
    manifest = Manifest.read(at) if at.is_file() else Manifest(submission=path.name)
    records = list(manifest.kaggle or [])
    if index is None:
        records.append(score)
        index = len(records) - 1
    else:
        records[index] = score
    replace(manifest, kaggle=records).write(at)
    return index


def local_manifests(folder: str | os.PathLike = SUBMISSIONS_DIR) -> pd.DataFrame:
    """One row per local submission manifest: file, run, config, cv, made (local or kernel);
    files that are not manifests are skipped."""
    rows = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(p.read_text())
            if isinstance(data, dict):  # the CSV beside it, for manifests that do not say
                data.setdefault("submission", p.with_suffix(".csv").name)
            m = Manifest.from_dict(data)
        except (ValueError, TGSError):
            continue
        rows.append(
            {
                "file": m.submission,
                "run": m.source,  # a blend's manifest names its folder
                "config": m.config_name,
                "cv": m.cv,
                "made": m.made_by,
            }
        )
    return pd.DataFrame(rows, columns=["file", "run", "config", "cv", "made"])


def submissions_table(folder: str | os.PathLike = SUBMISSIONS_DIR) -> pd.DataFrame:
    """Kaggle's submissions joined with local manifests: file, run, config, CV, public, ..."""
    remote = submissions().rename(
        columns={"fileName": "file", "publicScore": "public", "privateScore": "private"}
    )
    table = remote.merge(local_manifests(folder), on="file", how="left")
    if "status" in table:
        table["status"] = table["status"].map(_status)
    cols = ["file", "run", "config", "cv", "public", "private", "made", "date", "status"]
    return table[[c for c in [*cols, "description"] if c in table]]


def find_sample(
    submission: Path | None, sample: str | os.PathLike | None, data_dirs: tuple = ()
) -> Path:
    """sample_submission.csv to validate against: `sample`, else the one in the submission
    manifest's data folder, in `data_dirs`, or in data/ or data/competition."""
    if sample:
        return Path(sample)
    folders = list(data_dirs)
    manifest = Manifest.path_for(submission) if submission else None
    if manifest and manifest.is_file():
        folders.insert(0, Manifest.read(manifest).data)
    folders += DEFAULT_DATA
    for folder in filter(None, folders):
        if (Path(folder) / "sample_submission.csv").is_file():
            return Path(folder) / "sample_submission.csv"
    looked = ", ".join(str(f) for f in filter(None, folders))
    what = f" for {submission}" if submission else ""
    raise TGSError(f"cannot find sample_submission.csv{what} (looked in {looked}): pass --sample")
