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

import errno
import fcntl
import functools
import inspect
import json
import logging
import os
import shutil
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
from tgs.run.layout import FOLD_GLOB, made_by_tgs

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


def _acquire(folder: Path) -> _Held | None:
    """Lock `folder` (None: it is on a read-only file system, which nobody can write)."""
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno == errno.EROFS:
            return None
        raise TGSError(f"cannot lock {folder} for writing ({path}: {e.strerror or e})") from None
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
    if earlier.get("pid"):  # killed (the kernel dropped its flock), or it failed
        how = "it failed" if earlier.get("failed") else "not running"
        log.warning("warning: %s: taking over the lock left by %s (%s)", folder, _who(earlier), how)
        swept = sweep_unfinished(folder)  # the unfinished writes it (or its folds) left
        if swept:
            log.warning("warning: %s: removed %d unfinished write(s) it left", folder, swept)
    token = uuid.uuid4().hex
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "token": token}
    holder.update(
        command=" ".join(["tgs", *sys.argv[1:]]), since=time.strftime("%Y-%m-%d %H:%M:%S")
    )
    try:
        _write(fd, holder)
    except OSError as e:
        os.close(fd)
        what = "no space left on the device" if e.errno == errno.ENOSPC else e.strerror
        raise TGSError(
            f"cannot lock {folder} for writing ({path}: {what}); free some space and run "
            "the command again"
        ) from None
    return _Held(fd, token)


def _write(fd: int, holder: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def sweep_unfinished(folder: Path, pattern: str = ".*.tmp") -> int:
    """Remove the temporary files and folders of atomic writes a killed or failed writer left in
    `folder` and its fold folders (only its lock's new holder may: nobody else writes there).
    Returns how many."""
    found = [*folder.glob(pattern), *folder.glob(f"{FOLD_GLOB}/{pattern}")]
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return len(found)


def _release(held: _Held, failed: bool) -> None:
    """Unlock; after a failure the lock file keeps naming its holder (marked failed), so the
    next writer sweeps what the failure left (a killed fold process's temporary files)."""
    try:
        if failed:
            _write(held.fd, {**_read(held.fd), "failed": True})
        else:
            os.ftruncate(held.fd, 0)  # an empty lock file: nobody holds it
    except OSError:
        pass  # a full disk: the lock is released all the same
    fcntl.flock(held.fd, fcntl.LOCK_UN)
    os.close(held.fd)


def _torchrun_worker() -> bool:
    """A non-zero rank under torchrun: rank 0 (or the `tgs run` that started it) holds the lock."""
    return bool(os.environ.get("TORCHELASTIC_RUN_ID")) and os.environ.get("RANK", "0") != "0"


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
    if _parent_holds(Path(folder), _inherited().get(key)) or _torchrun_worker():
        yield  # a parent holds it (a fold child), or torchrun's rank 0 does
        return
    created = not Path(folder).exists()
    held = _acquire(Path(folder))
    if held is None:  # a read-only folder
        yield
        return
    _held[key] = held
    before = os.environ.get(ENV)
    os.environ[ENV] = json.dumps({**_inherited(), key: held.token})  # for child processes
    failed = True
    try:
        yield
        failed = False
    finally:
        del _held[key]
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        _release(held, failed)
        if created and [p.name for p in Path(folder).iterdir()] == [LOCK_FILE]:
            shutil.rmtree(folder, ignore_errors=True)  # a refused stage leaves no folder


def locks(param: str, existing: bool = False) -> Callable[[F], F]:
    """Decorator: each call holds `run_lock` on the folder its argument `param` names (a Run,
    whose root is locked, or a path). `existing`: only a folder tgs made (a run or a blend:
    `made_by_tgs`); for any other the stage refuses by itself, and no lock file is left there."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            target = signature.bind_partial(*args, **kwargs).arguments[param]
            folder = Path(getattr(target, "root", target))
            with run_lock(folder) if made_by_tgs(folder) or not existing else nullcontext():
                return fn(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap
