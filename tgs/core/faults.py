"""Fault injection for the reliability tests: make a chosen point of a real run die (SIGKILL),
find the disk full (ENOSPC) or hang, so a test can prove what `--resume`, the writers and the
Kaggle kernel's session limit promise.

    TGS_FAULT="kill@write:last.pt#2,enospc@write:*.npz"

Each item is KIND@POINT[#N]: at the N-th time (default 1) this process passes a point whose name
matches POINT (fnmatch), `kill` sends itself SIGKILL, `enospc` raises OSError(ENOSPC) and `hang`
creates the file $TGS_FAULT_MARK (when set) and blocks there, alive, until something kills it
(at most an hour, then it dies as `kill` does): a process still running at a known point, as
the end of a Kaggle session finds it. Points: `write:NAME` (a file NAME fully written to its
temporary path, before the rename), `writedir:NAME` (a folder NAME likewise), `step` (after an
optimizer step), `predict` (after a predicted test batch). Unset (every user's case) a point
costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import time
from collections import Counter
from pathlib import Path

ENV = "TGS_FAULT"
MARK_ENV = "TGS_FAULT_MARK"  # the file a `hang` fault creates before it blocks
HANG_SECONDS = 3600.0
_passed: Counter[str] = Counter()


def fault_point(point: str) -> None:
    """Pass the point `point`; kill, fail or hang here when TGS_FAULT says so."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _passed[point] += 1
    for item in filter(None, (s.strip() for s in spec.split(","))):
        kind, _, where = item.partition("@")
        pattern, _, nth = where.partition("#")
        if not fnmatch.fnmatchcase(point, pattern):
            continue
        if sum(n for p, n in _passed.items() if fnmatch.fnmatchcase(p, pattern)) != int(nth or 1):
            continue
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), point)
        if kind == "hang":
            _hang(point)


def _hang(point: str) -> None:
    """Say where this process hangs (the $TGS_FAULT_MARK file), then block until killed."""
    mark = os.environ.get(MARK_ENV)
    if mark:
        Path(mark).write_text(f"{os.getpid()} hangs at {point}\n")
    deadline = time.monotonic() + HANG_SECONDS
    while time.monotonic() < deadline:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)  # nobody came: never go on as if nothing happened
