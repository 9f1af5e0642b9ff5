"""Thin wrapper over the `kaggle` command-line program (never imported: it may exit on import).

Credentials are checked before any call and never printed. Each function builds the exact CLI
arguments, runs them through `run_kaggle`, and turns known failures into messages a user can act
on (403: accept the rules; 401: bad credentials).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tgs import COMPETITION
from tgs.errors import TGSError
from tgs.fileio import write_json

RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
SECRET_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")


class KaggleError(TGSError):
    """A kaggle CLI call could not be made or failed."""


@dataclass
class Credentials:
    """Where the credentials were found (never the secret itself) and the username if known."""

    source: str
    username: str | None


def config_dirs(env: os._Environ | dict | None = None) -> list[Path]:
    """Folders the kaggle CLI reads kaggle.json / access_token from, in its order."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"])]
    home = Path(env.get("HOME", str(Path.home())))
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return [home / ".kaggle", xdg / "kaggle"]


def find_credentials(env: os._Environ | dict | None = None) -> Credentials:
    """Locate credentials as the kaggle CLI would; KaggleError saying what to create if none."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return Credentials("KAGGLE_USERNAME/KAGGLE_KEY", env["KAGGLE_USERNAME"])
    if env.get("KAGGLE_API_TOKEN"):
        return Credentials("KAGGLE_API_TOKEN", env.get("KAGGLE_USERNAME"))
    for folder in config_dirs(env):
        path = folder / "kaggle.json"
        if path.is_file():
            try:
                username = json.loads(path.read_text()).get("username")
            except (OSError, ValueError):
                raise KaggleError(f"{path} is not valid JSON: download it again") from None
            return Credentials(str(path), username)
        for name in ("access_token", "access_token.txt"):
            if (folder / name).is_file():
                return Credentials(str(folder / name), env.get("KAGGLE_USERNAME"))
    where = " or ".join(str(d / "kaggle.json") for d in config_dirs(env))
    raise KaggleError(
        "no Kaggle credentials found. Create an API token on kaggle.com (Settings -> API) and "
        f"save it as {where} (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY, or "
        "KAGGLE_API_TOKEN"
    )


def _redact(text: str) -> str:
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret and len(secret) > 3:
            text = text.replace(secret, "***")
    return text


def run_kaggle(args: list[str], check_credentials: bool = True) -> str:
    """Run `kaggle ARGS`; returns stdout. KaggleError with the reason on failure."""
    if check_credentials:
        find_credentials()
    exe = shutil.which("kaggle")
    if exe is None:
        raise KaggleError("the kaggle CLI is not installed: pip install kaggle six")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    out = _redact(proc.stdout + proc.stderr)
    if re.search(r"\b403\b|Forbidden", out):
        raise KaggleError(
            f"403 Forbidden from `kaggle {' '.join(args[:2])}`: accept the competition rules at "
            f"{RULES_URL} (and check the token's permissions)"
        )
    if re.search(r"\b401\b|Unauthorized", out):
        raise KaggleError("401 Unauthorized: the Kaggle credentials were rejected; renew the token")
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-5:])
        raise KaggleError(f"`kaggle {' '.join(args[:2])}` failed ({proc.returncode}): {tail}")
    return _redact(proc.stdout)


def download(out: str | os.PathLike, force: bool = False) -> Path:
    """Download the competition zip and unpack it into `out` like `tgs prepare`."""
    from tgs.data.prepare import prepare

    out = Path(out)
    staging = out.parent / f".{out.name}.download"
    staging.mkdir(parents=True, exist_ok=True)
    run_kaggle(["competitions", "download", "-c", COMPETITION, "-p", str(staging)])
    zip_path = staging / f"{COMPETITION}.zip"
    if not zip_path.is_file():
        raise KaggleError(f"kaggle reported success but {zip_path} is missing")
    prepare(zip_path, out, force=force)
    shutil.move(str(zip_path), out / zip_path.name)
    shutil.rmtree(staging, ignore_errors=True)
    return out


def submissions() -> pd.DataFrame:
    """The competition's submissions as the CLI lists them (fileName, date, status, scores...)."""
    text = run_kaggle(["competitions", "submissions", "-c", COMPETITION, "--csv"])
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("Using ")]
    if not lines or lines[0].startswith("No submissions"):
        return pd.DataFrame(
            columns=["fileName", "date", "description", "status", "publicScore", "privateScore"]
        )
    return pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, keep_default_na=False)


def _status(value: str) -> str:
    v = value.lower()
    return "complete" if "complete" in v else "error" if "error" in v else "pending"


def submit(
    path: str | os.PathLike,
    message: str,
    sample: str | os.PathLike,
    wait: bool = False,
    poll_seconds: float = 30.0,
    timeout_seconds: float = 3600.0,
) -> dict:
    """Validate, submit, and with `wait` poll until scored; scores go into the manifest."""
    from tgs.submission import validate_file

    path = Path(path)
    validate_file(path, sample)  # refuses an invalid file before anything is uploaded
    run_kaggle(["competitions", "submit", "-c", COMPETITION, "-f", str(path), "-m", message])
    record = {
        "message": message,
        "submitted": time.strftime("%Y-%m-%d %H:%M:%S"),
        "status": "pending",
    }
    deadline = time.time() + timeout_seconds
    while wait:
        rows = submissions()
        mine = rows[(rows["fileName"] == path.name) & (rows["description"] == message)]
        if len(mine) and _status(mine.iloc[0]["status"]) != "pending":
            row = mine.iloc[0]
            record.update(
                status=_status(row["status"]),
                public=row.get("publicScore") or None,
                private=row.get("privateScore") or None,
            )
            break
        if time.time() > deadline:
            break
        time.sleep(poll_seconds)
    _record_in_manifest(path, record)
    return record


def _record_in_manifest(path: Path, record: dict) -> None:
    manifest = path.with_suffix(".json")
    data = json.loads(manifest.read_text()) if manifest.is_file() else {"submission": path.name}
    data.setdefault("kaggle", []).append(record)
    write_json(manifest, data)


def local_manifests(folder: str | os.PathLike = "submissions") -> pd.DataFrame:
    """One row per local submission manifest: file, run, config, cv."""
    rows = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            m = json.loads(p.read_text())
        except ValueError:
            continue
        rows.append(
            {
                "file": m.get("submission", p.with_suffix(".csv").name),
                "run": m.get("run"),
                "config": (m.get("config") or {}).get("name"),
                "cv": m.get("cv"),
            }
        )
    return pd.DataFrame(rows, columns=["file", "run", "config", "cv"])


def submissions_table(folder: str | os.PathLike = "submissions") -> pd.DataFrame:
    """Kaggle's submissions joined with local manifests: file, run, config, CV, public, ..."""
    remote = submissions().rename(
        columns={"fileName": "file", "publicScore": "public", "privateScore": "private"}
    )
    table = remote.merge(local_manifests(folder), on="file", how="left")
    cols = ["file", "run", "config", "cv", "public", "private", "date", "status", "description"]
    return table[[c for c in cols if c in table]]


def wait_dataset_ready(
    ref: str, timeout_seconds: float = 600.0, poll_seconds: float = 10.0
) -> None:
    """Poll `kaggle datasets status` until the uploaded dataset is ready (or time runs out)."""
    deadline = time.time() + timeout_seconds
    while time.time() < deadline:
        if "ready" in run_kaggle(["datasets", "status", ref]).lower():
            return
        time.sleep(poll_seconds)
    raise KaggleError(f"dataset {ref} is not ready after {timeout_seconds:.0f}s; push again later")
