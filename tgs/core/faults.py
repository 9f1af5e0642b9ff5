"""Fault injection for the reliability tests: make a chosen point of a real run die (SIGKILL)
or find the disk full (ENOSPC), so a test can prove what `--resume` and the writers promise.

    TGS_FAULT="kill@write:last.pt#2,enospc@write:*.npz"

Each item is KIND@POINT[#N]: at the N-th time (default 1) this process passes a point whose name
matches POINT (fnmatch), `kill` sends itself SIGKILL and `enospc` raises OSError(ENOSPC).
Points: `write:NAME` (a file NAME fully written to its temporary path, before the rename),
`writedir:NAME` (a folder NAME likewise), `step` (after an optimizer step), `predict` (after a
predicted test batch). Unset (every user's case) a point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
from collections import Counter

ENV = "TGS_FAULT"
_passed: Counter[str] = Counter()


def fault_point(point: str) -> None:
    """Pass the point `point`; kill or fail here when TGS_FAULT says so."""
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
