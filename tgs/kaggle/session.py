"""In a kernel: when its Kaggle session started, and so when tgs must stop `tgs run` to save
before the session's limit.

Kaggle counts the 12 hours from the session's start, not from the script's. Inside the kernel
the earliest moment one can see is the start of the container's first process (PID 1, read
from /proc): tgs counts from there when it runs on Kaggle (KAGGLE_KERNEL_RUN_TYPE is set), and
records the set-up time it measured (the script's start minus that) in tgs-train.json. When
/proc cannot tell, it counts from the script's start less SETUP_MINUTES, an allowance (not a
measured time). Off Kaggle (a kernel run locally) the clock starts with the script.

TGS_KAGGLE_SESSION_END_MARK (for tests): the session counts as over once that file exists, so a
test ends a session at a known point of `tgs run` (its `hang` fault creates the file) instead
of after however many seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tgs.kaggle.limits import SESSION_MINUTES, SETUP_MINUTES, STOP_MINUTES

END_MARK_ENV = "TGS_KAGGLE_SESSION_END_MARK"


def process_start(pid: int, proc: Path = Path("/proc")) -> float | None:
    """When process `pid` started (seconds since the epoch) by /proc; None if it cannot tell."""
    try:
        btime = next(
            float(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return btime + int(fields[19]) / ticks  # field 22: starttime, in clock ticks after boot
    except (OSError, StopIteration, IndexError, ValueError):
        return None


@dataclass
class SessionClock:
    """`start`: when the session's limit counts from (seconds since the epoch); `source`: how
    that was found; `kernel_start`: the script's start; `end_mark`: a test's end of session."""

    start: float
    source: str
    kernel_start: float
    setup_seconds: float | None = None
    end_mark: Path | None = None

    @classmethod
    def detect(
        cls,
        now: float | None = None,
        env: Mapping[str, str] | None = None,
        proc: Path = Path("/proc"),
    ) -> SessionClock:
        """The clock of the kernel running here (see the module's docstring)."""
        now = time.time() if now is None else now
        env = os.environ if env is None else env
        mark = Path(env[END_MARK_ENV]) if env.get(END_MARK_ENV) else None
        if not env.get("KAGGLE_KERNEL_RUN_TYPE"):
            return cls(now, "the kernel's start (not on Kaggle)", now, None, mark)
        first = process_start(1, proc)
        if first is not None and 0 <= now - first < 60 * SESSION_MINUTES:
            setup = round(now - first, 1)
            return cls(first, "the container's start (PID 1)", now, setup, mark)
        source = f"the kernel's start less {SETUP_MINUTES} min set-up (/proc cannot tell)"
        return cls(now - 60 * SETUP_MINUTES, source, now, None, mark)

    def stop_time(self, limit_minutes: float = SESSION_MINUTES) -> float:
        """When to stop `tgs run`: STOP_MINUTES before the limit, counted from `start`."""
        return self.start + 60 * (limit_minutes - STOP_MINUTES)

    def over(self, stop_time: float, now: float | None = None) -> bool:
        """Whether the session has reached `stop_time` (or the test's end mark exists)."""
        if self.end_mark is not None and self.end_mark.exists():
            return True
        return (time.time() if now is None else now) >= stop_time
