"""Child processes of tgs (folds, budget probes): the environment they get, and when the fold
a process trains was launched (its interpreter, imports and data count toward its budget)."""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder holding tgs/ (children import it)
FOLD_LAUNCHED = "TGS_FOLD_LAUNCHED"  # time.time() when `tgs run` launched a fold's process


def child_env(gpu: str | None = None) -> dict[str, str]:
    """This process's environment for a child: tgs importable, the launch time stamped, and
    only GPU `gpu` visible when given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env[FOLD_LAUNCHED] = repr(time.time())
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def fold_started() -> float:
    """When this fold's work began: when `tgs run` launched this process, else now (a
    `tgs train` of its own: its probe is already out of the plan)."""
    launched = os.environ.get(FOLD_LAUNCHED)
    return float(launched) if launched else time.time()
