"""Atomic file and folder writes: a crash never leaves a half-written output behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tgs.core.errors import TGSError
from tgs.core.faults import fault_point


def _tmp_name(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _human(n: int) -> str:
    """Bytes as B, KB, MB or GB (powers of 1000, as `df -H`)."""
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _failure(path: Path, tmp: Path, e: BaseException) -> TGSError | None:
    """The TGSError for a failed write of `path` (its temporary `tmp` not yet removed): a full
    disk says where, how much is free and at least how much is needed. None: not a disk error
    (the exception goes on as it is)."""
    if not (isinstance(e, (OSError, RuntimeError))):
        return None
    try:
        free = shutil.disk_usage(path.parent).free
        written = max(_size(tmp), _size(path))  # what the write reached, or the file it replaces
    except OSError:  # the folder itself is gone or unreadable: not a full disk we can measure
        free, written = 1 << 62, 0
    # torch.save reports a full disk as a RuntimeError from its zip writer, not as ENOSPC
    full = getattr(e, "errno", None) == errno.ENOSPC or (
        isinstance(e, RuntimeError) and free < (1 << 20)
    )
    if full:
        return DiskFullError(
            f"no space left on the device writing {path}: {_human(free)} free there, at least "
            f"{_human(max(written, 1))} needed; nothing was written: free some space and run "
            "the command again (a run: with --resume)"
        )
    if isinstance(e, OSError):
        return TGSError(f"cannot write {path}: {e.strerror or e}")
    return None


class DiskFullError(TGSError):
    """A write found the disk full (nothing was left half-written)."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it
    (a full disk or another OSError becomes a TGSError naming `path`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(path)
    except OSError as e:
        raise _failure(path, path, e) from e
    try:
        yield tmp
        fault_point(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException as e:
        error = _failure(path, tmp, e) if isinstance(e, Exception) else None
        tmp.unlink(missing_ok=True)
        if error is None:
            raise
        raise error from e


@contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it becomes `path`, else it is removed."""
    path = Path(path)
    occupied = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if occupied and not overwrite:
        raise TGSError(f"{path} already exists and is not empty (use --force to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise _failure(path, path, e) from e
    try:
        yield tmp
        fault_point(f"writedir:{path.name}")
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    except BaseException as e:
        error = _failure(path, tmp, e) if isinstance(e, Exception) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if error is None:
            raise
        raise error from e


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
