"""One writer per run folder. A stage that writes a folder (a run, a blend, a Kaggle staging
folder) holds `run_lock(FOLDER)`: an exclusive flock on FOLDER/.lock, which says who holds it
(pid, host, command, since). A second writer refuses at once naming them; a lock file left by a
killed process is not locked any more (the kernel drops a dead process's flock), so the next
writer takes it over with a warning. Readers take no lock.

Nested and child writers: a process may take the same lock again (re-entrant), and the
processes it starts (fold children, torchrun ranks) write under it: they find its token in
TGS_RUN_LOCKS and get its file descriptor (`held_fds`, for `Popen(pass_fds=...)`), so the lock
stays held while any of them still runs, even if the parent was killed.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tgs.core.errors import TGSError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
LOCK_FILE = ".lock"
ENV = "TGS_RUN_LOCKS"  # JSON {folder: token} of the locks held by this process's ancestors


class RunLockedError(TGSError):
    """Another process is writing the folder."""


@dataclass
class _Held:
    fd: int
    token: str
    depth: int = 1


_held: dict[str, _Held] = {}


def held_fds() -> tuple[int, ...]:
    """The lock files this process holds, for its child processes to keep them held."""
    return tuple(h.fd for h in _held.values())


def _inherited() -> dict[str, str]:
    try:
        found = json.loads(os.environ.get(ENV, "{}"))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _read(fd: int) -> dict:
    """The holder a lock file names ({} when empty or not ours)."""
    raw = os.pread(fd, 1 << 16, 0)
    try:
        found = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _who(holder: dict) -> str:
    command = f", `{holder['command']}`" if holder.get("command") else ""
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{command}{since}"


def _parent_holds(folder: Path, token: str | None) -> bool:
    """Whether the lock of `folder` is held by the ancestor whose token this process got."""
    path = folder / LOCK_FILE
    if not token or not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return _read(fd).get("token") == token
    finally:
        os.close(fd)


def _acquire(folder: Path) -> _Held:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        raise RunLockedError(
            f"{folder} is being written by another tgs process ({_who(holder)}, or the fold "
            f"processes it started): wait for it to finish, or write to another folder "
            f"(--run NEW); reading {folder} is not blocked"
        ) from None
    earlier = _read(fd)
    if earlier.get("pid"):  # its process is gone: the kernel dropped its flock
        log.warning(
            "warning: %s: taking over the lock left by %s (not running)", folder, _who(earlier)
        )
    token = uuid.uuid4().hex
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": token}
    holder.update(
        command=" ".join(["tgs", *sys.argv[1:]]), since=time.strftime("%Y-%m-%d %H:%M:%S")
    )
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    return _Held(fd, token)


def _release(held: _Held) -> None:
    os.ftruncate(held.fd, 0)  # an empty lock file: nobody holds it
    fcntl.flock(held.fd, fcntl.LOCK_UN)
    os.close(held.fd)


@contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold the writer lock of `folder` (created if missing) for the block; RunLockedError
    naming the holder when another process holds it."""
    key = str(Path(folder).resolve())
    if key in _held:  # this process holds it already
        _held[key].depth += 1
        try:
            yield
        finally:
            _held[key].depth -= 1
        return
    if _parent_holds(Path(folder), _inherited().get(key)) or os.environ.get("RANK", "0") != "0":
        yield  # a parent holds it (a fold child), or torchrun's rank 0 does
        return
    held = _held[key] = _acquire(Path(folder))
    before = os.environ.get(ENV)
    os.environ[ENV] = json.dumps({**_inherited(), key: held.token})  # for child processes
    try:
        yield
    finally:
        del _held[key]
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        _release(held)


def locks(param: str, existing: bool = False) -> Callable[[F], F]:
    """Decorator: each call holds `run_lock` on the folder its argument `param` names (a Run,
    whose root is locked, or a path). `existing`: only a folder tgs made (it holds config.yaml
    or blend.json); for any other the stage refuses by itself, and no lock file is left there."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            target = signature.bind_partial(*args, **kwargs).arguments[param]
            folder = Path(getattr(target, "root", target))
            made = any((folder / f).is_file() for f in ("config.yaml", "blend.json"))
            with run_lock(folder) if made or not existing else nullcontext():
                return fn(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap
