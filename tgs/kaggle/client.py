"""Running the `kaggle` client as a program (never imported: it authenticates, and may exit, on
import).

Credentials are looked up where client 2.x reads them and never printed. Each call has an idle
timeout (no output for that long: the network is hung). A call failed when the client says so:
its exit code, or one of the error lines it prints while exiting 0; the error it printed decides
what tgs tells the user to do.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tgs import COMPETITION
from tgs.core.errors import TGSError
from tgs.kaggle.image import version_tuple
from tgs.kaggle.limits import MIN_CLIENT

log = logging.getLogger(__name__)
T = TypeVar("T")

RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings/api"
TIMEOUT_ENV = "TGS_KAGGLE_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
SECRET_ENV = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")
# Lines the client prints (exiting 0) when the call failed.
FAILURE_LINES = (
    "Dataset creation error",
    "Dataset version creation error",
    "Kernel push error",
    "The following are not valid dataset sources",
    "The following are not valid competition sources",
    "The following are not valid kernel sources",
    "Could not submit to competition",
)
_NETWORK = ("ConnectionPool(host=", "Connection aborted", "Failed to establish a new connection")
_HOST = re.compile(r"ConnectionPool\(host='([^']+)'")
_BAR = re.compile(r"\d+%\|")  # a tqdm progress bar (uploads, downloads)
_CAUSE = re.compile(r"\[Errno [-\d]+\] [^)\"']+|Read timed out|Connection aborted|timed out")
_timeout: float | None = None
_warned: set[str] = set()
_versions: dict[str, str] = {}  # the version of each kaggle program asked (by path)


class KaggleError(TGSError):
    """A kaggle call could not be made or failed; `kind` says why (credentials, rejected,
    forbidden, not_found, network, timeout, missing, client, failed); `said`: the client's own
    error line, when it printed one."""

    def __init__(self, message: str, kind: str = "failed", said: str | None = None):
        super().__init__(message)
        self.kind, self.said = kind, said


@dataclass
class Credentials:
    """What kind of credentials, where they were found (never the secret) and the username."""

    kind: str
    source: str
    username: str | None


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("warning: %s", message)


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where client 2.x reads kaggle.json: $KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists,
    else (Linux) $XDG_CONFIG_HOME/kaggle."""
    env = os.environ if env is None else env
    if env.get("KAGGLE_CONFIG_DIR"):
        return Path(env["KAGGLE_CONFIG_DIR"])
    legacy = _home(env) / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(env.get("XDG_CONFIG_HOME") or _home(env) / ".config") / "kaggle"
    return legacy


def _secret_file(path: Path) -> Path:
    """`path`, with a warning when other users can read it (as the client warns)."""
    if os.name != "nt" and path.stat().st_mode & 0o044:
        _warn_once(f"{path} is readable by other users: chmod 600 {shlex.quote(str(path))}")
    return path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        _warn_once(f"{path} is not valid JSON: the kaggle client ignores it")
        return {}
    return data if isinstance(data, dict) else {}


def find_credentials(env: Mapping[str, str] | None = None) -> Credentials:
    """Credentials in client 2.x's order: access token (KAGGLE_API_TOKEN, ~/.kaggle/access_token),
    API key (kaggle.json in `config_dir()`, overridden by KAGGLE_USERNAME/KAGGLE_KEY), OAuth
    (~/.kaggle/credentials.json from `kaggle auth login`). KaggleError saying what to do if none."""
    env = os.environ if env is None else env
    home, user = _home(env) / ".kaggle", env.get("KAGGLE_USERNAME") or None
    if env.get("KAGGLE_KERNEL_RUN_TYPE") and env.get("KAGGLE_DATA_PROXY_URL"):
        path = env.get("KAGGLE_API_V1_TOKEN")
        if path and Path(path).is_file() and Path(path).read_text().strip():
            return Credentials("access token", "KAGGLE_API_V1_TOKEN", user)
    if env.get("KAGGLE_API_TOKEN"):
        return Credentials("access token", "KAGGLE_API_TOKEN", user)
    for name in ("access_token", "access_token.txt"):
        path = home / name
        if path.is_file() and path.read_text().strip():
            return Credentials("access token", str(_secret_file(path)), user)
    path = config_dir(env) / "kaggle.json"
    data = _read_json(_secret_file(path)) if path.is_file() else {}
    user = user or data.get("username") or None
    key_source = "KAGGLE_KEY" if env.get("KAGGLE_KEY") else str(path) if data.get("key") else None
    if user and key_source:
        return Credentials("API key", key_source, user)
    path = home / "credentials.json"
    oauth = _read_json(_secret_file(path)) if path.is_file() else {}
    if oauth.get("refresh_token"):
        return Credentials("OAuth login", str(path), oauth.get("username") or None)
    raise KaggleError(
        "no Kaggle credentials found. Run `kaggle auth login`, or create an API token at "
        f"{TOKEN_URL} and set KAGGLE_API_TOKEN or save it as {home / 'access_token'} "
        f"(chmod 600); a legacy kaggle.json goes in {config_dir(env)} (or set KAGGLE_USERNAME "
        "and KAGGLE_KEY)",
        "credentials",
    )


def set_timeout(seconds: float | None) -> None:
    """The idle timeout of every kaggle call (None: $TGS_KAGGLE_TIMEOUT, else 300 s)."""
    global _timeout
    _timeout = seconds


@contextmanager
def timeout(seconds: float | None) -> Iterator[None]:
    """`set_timeout(seconds)` for the kaggle calls made inside the block (a command's
    --timeout), the previous timeout again after it."""
    previous = _timeout
    set_timeout(seconds)
    try:
        yield
    finally:
        set_timeout(previous)


def idle_timeout() -> float:
    if _timeout is not None:
        return _timeout
    value = os.environ.get(TIMEOUT_ENV)
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise KaggleError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def shell_command(args: list[str]) -> str:
    """`kaggle ARGS` as a shell line that runs when pasted."""
    return shlex.join(["kaggle", *args])


def _redact(text: str) -> str:
    for name in SECRET_ENV:
        secret = os.environ.get(name)
        if secret and len(secret) > 3:
            text = text.replace(secret, "***")
    return text


@dataclass
class Output:
    """What a successful call printed: stdout without the client's warning lines, stderr."""

    stdout: str
    stderr: str


def _client_warnings(stdout: str) -> str:
    """Show the client's warnings once each (as tgs warnings); returns stdout without them."""
    kept = []
    for line in stdout.splitlines(keepends=True):
        if not line.startswith("Warning:"):
            kept.append(line)
            continue
        old = re.search(r"installed: ([^)]+)\).*latest version \(([^)]+)\)", line)
        if old:
            _warn_once(
                f"the kaggle client {old.group(1)} is outdated (latest {old.group(2)}): "
                "pip install -U kaggle"
            )
        elif "readable by other users" not in line:  # tgs already said which file
            _warn_once(line[len("Warning:") :].strip())
    return "".join(kept)


class _Echo:
    """Passes the client's progress through to the terminal as it arrives."""

    def __init__(self, stream):
        self.stream, self.partial = stream, ""
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, chunk: bytes, lines_only: bool) -> None:
        text = self.decoder.decode(chunk)
        if lines_only:  # stdout: whole lines, the client's warnings left out (tgs shows them)
            *whole, self.partial = (self.partial + text).split("\n")
            shown = [ln for ln in whole if ln.strip() and not ln.startswith("Warning:")]
            text = "".join(f"{ln}\n" for ln in shown)
        self.write(text)

    def close(self) -> None:
        self.write(self.partial + "\n" if self.partial.strip() else "")

    def write(self, text: str) -> None:
        if text:
            self.stream.write(_redact(text))
            self.stream.flush()


def _communicate(proc: subprocess.Popen, timeout: float, echo: bool) -> tuple[str, str, bool]:
    """(stdout, stderr, timed out): reads both pipes; kills the client after `timeout` seconds
    without output."""
    chunks: queue.Queue = queue.Queue()

    def pump(stream, name: str) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            chunks.put((name, chunk))
        chunks.put((name, None))

    for stream, name in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=pump, args=(stream, name), daemon=True).start()
    data: dict[str, bytes] = {"out": b"", "err": b""}
    echoes = {"out": _Echo(sys.stdout), "err": _Echo(sys.stderr)}
    open_streams, deadline = 2, time.monotonic() + timeout
    while open_streams:
        try:
            name, chunk = chunks.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            proc.wait()
            return data["out"].decode(errors="replace"), data["err"].decode(errors="replace"), True
        if chunk is None:
            open_streams -= 1
            continue
        deadline = time.monotonic() + timeout
        data[name] += chunk
        if echo:
            echoes[name].feed(chunk, lines_only=name == "out")
    proc.wait()
    if echo:
        echoes["out"].close()
    return data["out"].decode(errors="replace"), data["err"].decode(errors="replace"), False


def run_kaggle(args: list[str], check_credentials: bool = True, progress: bool = False) -> Output:
    """Run `kaggle ARGS` (after checking credentials); `progress` shows its output live.
    KaggleError with what to do when it failed."""
    creds = find_credentials() if check_credentials else None
    exe = shutil.which("kaggle")
    if exe is None:
        raise KaggleError("the kaggle client is not installed: pip install kaggle", "missing")
    timeout = idle_timeout()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen(
        [exe, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err, timed_out = _communicate(proc, timeout, progress)
    out, err = _client_warnings(_redact(out)), _redact(err)
    what = f"`kaggle {' '.join(args[:2])}`"
    if timed_out:
        raise KaggleError(
            f"network timeout: no answer from Kaggle for {timeout:.0f}s during {what}; check the "
            f"internet connection, or allow longer with --timeout / {TIMEOUT_ENV}",
            "timeout",
        )
    failure = classify(args, proc.returncode, out, err, creds)
    if failure:
        raise failure
    return Output(out, err)


def _client_error(out: str, err: str) -> str:
    """The first line of the client's own error message (its progress bars left out)."""
    for text in (err, out):
        for line in text.splitlines():
            if line.strip() and not line.startswith(("Traceback", "  ")) and not _BAR.search(line):
                return line.strip()
    return "(no message)"


def classify(
    args: list[str], returncode: int, out: str, err: str, creds: Credentials | None = None
) -> KaggleError | None:
    """The failure a finished call reports (None: it worked), decided by the exit code and the
    error lines the client prints."""
    what, text = f"`kaggle {' '.join(args[:2])}`", out + "\n" + err
    lines = [ln.strip() for ln in text.splitlines()]
    failed = next((ln for ln in lines if ln.startswith(FAILURE_LINES)), None)
    if returncode == 0 and failed is None:
        return None
    if any(marker in text for marker in _NETWORK):
        host = _HOST.search(text)
        cause = _CAUSE.search(text)
        return KaggleError(
            f"network failure: cannot reach {host.group(1) if host else 'kaggle.com'} "
            f"({cause.group(0).strip() if cause else 'no connection'}) during {what}; check the "
            "internet connection (and HTTPS_PROXY behind a proxy), then run the command again",
            "network",
        )
    if failed:
        return KaggleError(f"{what} failed: {failed}", "failed", failed)
    if any(ln.startswith(("Authentication required to call", "401 Client")) for ln in lines):
        where = f"the {creds.kind} from {creds.source}" if creds else "the credentials"
        return KaggleError(
            f"Kaggle rejected {where} (401 from {what}): it is wrong, expired or revoked. Create "
            f"a new API token at {TOKEN_URL} or run `kaggle auth login`",
            "rejected",
        )
    said = _client_error(out, err)
    if any(ln.startswith(("You don't have access to this resource", "403 Client")) for ln in lines):
        todo = (
            f"accept the competition rules at {RULES_URL} (signed in as the account of these "
            "credentials)"
            if args[:1] == ["competitions"]
            else "check that it belongs to the account of these credentials"
        )
        return KaggleError(f"403 Forbidden from {what} ({said}): {todo}", "forbidden", said)
    if "Cannot access kernel" in said:
        return KaggleError(
            f"{what}: {said.split('. ')[0]}; check the kernel's name", "not_found", said
        )
    if any(ln.startswith(("The resource was not found.", "404 Client Error")) for ln in lines):
        return KaggleError(f"{what}: not found ({said})", "not_found", said)
    if "You have been rate limited." in " ".join(lines):
        return KaggleError(f"{what}: rate limited by Kaggle; wait a few minutes and retry")
    tail = "\n".join((err.strip() or out.strip()).splitlines()[-5:])
    return KaggleError(f"{what} failed (exit {returncode}): {tail}", "failed", said)


def client_version() -> str:
    """The version of the `kaggle` program first on PATH (`kaggle --version`, asked once)."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise KaggleError("the kaggle client is not installed: pip install kaggle", "missing")
    if exe not in _versions:
        try:
            done = subprocess.run(
                [exe, "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=idle_timeout(),
            )
        except subprocess.TimeoutExpired:
            raise KaggleError(f"`{exe} --version` did not answer", "timeout") from None
        found = re.search(r"(\d+(?:\.\d+)+)", done.stdout + done.stderr)
        if not found:
            raise KaggleError(f"cannot tell the version of the kaggle client {exe}", "client")
        _versions[exe] = found.group(1)
    return _versions[exe]


def require_client(minimum: str = MIN_CLIENT) -> str:
    """The client's version; KaggleError when it is older than `minimum` (it would page through
    `kernels output` wrongly, or lack an option tgs passes)."""
    version = client_version()
    if version_tuple(version) < version_tuple(minimum):
        raise KaggleError(
            f"the kaggle client {shutil.which('kaggle')} is {version}; tgs needs kaggle >= "
            f"{minimum} (older clients download only the first page of 20 files of a kernel's "
            f"output, and lack `datasets status --format json`): pip install -U "
            f"'kaggle>={minimum}'",
            "client",
        )
    return version


def kaggle_username(creds: Credentials | None = None) -> str:
    """The Kaggle username: from the credentials, else as the client resolves it."""
    creds = creds or find_credentials()
    if creds.username:
        return creds.username
    found = re.search(r"^- username: (\S+)$", run_kaggle(["config", "view"]).stdout, re.M)
    if not found or found.group(1) == "None":
        raise KaggleError("cannot tell your Kaggle username: pass --user (or set KAGGLE_USERNAME)")
    return found.group(1)


def kaggle_user(username: str | None, dry_run: bool = False) -> str:
    """`username` when given, else the Kaggle username (`dry_run`: from the credentials only,
    calling nothing)."""
    if username:
        return username
    if dry_run:  # call nothing: the credentials' own username, or --user
        found = find_credentials().username
        if not found:
            raise KaggleError("cannot tell your Kaggle username from the credentials: pass --user")
        return found
    return kaggle_username()


def poll(
    check: Callable[[], T | None],
    first: float,
    max_wait: float,
    *,
    factor: float = 1.5,
    longest: float = 300.0,
    sleep: Callable[[float], None] | None = None,
) -> T | None:
    """check() until it returns a value, sleeping `first` seconds, then `factor` times longer
    each time (at most `longest`); None once `max_wait` seconds have passed."""
    start, interval, slept = time.monotonic(), first, 0.0
    while True:
        found = check()
        if found is not None:
            return found
        left = max_wait - max(time.monotonic() - start, slept)
        if left <= 0:
            return None
        (sleep or time.sleep)(min(interval, left))
        slept += min(interval, left)
        interval = min(interval * factor, longest)
