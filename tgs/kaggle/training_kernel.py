"""In a Kaggle training kernel: prepare the competition data in a writable folder, run `tgs run`
into /kaggle/working/run (continuing an earlier kernel's run when its output is attached), stop
before the session limit, and say in tgs-train.json how far it got."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tgs import COMPETITION
from tgs.core.config import Config, load_config
from tgs.core.errors import TGSError
from tgs.core.meta import gpu_count, gpu_name
from tgs.data.prepare import prepare_folder
from tgs.kaggle.inference_kernel import find_input
from tgs.kaggle.limits import MARGIN_MINUTES, OUTPUT_LIMIT_GB, SESSION_MINUTES, STOP_MINUTES
from tgs.kaggle.stage import SUBMISSION, TRAIN_CONFIG
from tgs.run.lock import LOCK_FILE
from tgs.run.records import StageInfo, TrainStatus

log = logging.getLogger(__name__)
STATUS = TrainStatus.FILE
RUN = "run"  # the run folder in /kaggle/working


def session_minutes() -> float:
    """The session's limit (TGS_KAGGLE_SESSION_MINUTES, for tests; else Kaggle's 12 h)."""
    return float(os.environ.get("TGS_KAGGLE_SESSION_MINUTES", SESSION_MINUTES))


def check_budget(cfg: Config, limit: float) -> None:
    """Refuse a `budget_minutes` that a session of `limit` minutes cannot hold with margin."""
    most = limit - MARGIN_MINUTES
    if cfg.budget_minutes and cfg.budget_minutes > most:
        raise TGSError(
            f"budget_minutes={cfg.budget_minutes:g} does not fit a Kaggle session: it runs at "
            f"most {limit:g} min, and {MARGIN_MINUTES} go to setting up and saving (budget <= "
            f"{most:g}); "
            "lower it, or train with fixed epochs and continue with --resume-from"
        )


def _competition(input_root: Path) -> Path:
    comps = [p for p in find_input(input_root, COMPETITION) if p.is_dir()]
    if not comps:
        raise TGSError(f"competition data not attached: no {COMPETITION} folder in {input_root}")
    return comps[0]


def _earlier_run(input_root: Path, staged: Path) -> Path | None:
    """An attached earlier kernel's run folder (its output's run/config.yaml), if any."""
    found = [
        p.parent for p in find_input(input_root, f"{RUN}/config.yaml") if staged not in p.parents
    ]
    return found[0] if found else None


def run_command(config: Path, data: Path, run_dir: Path, resume: bool, gpus: int) -> list[str]:
    """The kernel's `tgs run`: one fold per GPU when it has several (Kaggle's T4 x2)."""
    cmd = [sys.executable, "-m", "tgs", "run", "--config", str(config), "--data", str(data)]
    cmd += ["--run", str(run_dir)] + (["--resume"] if resume else [])
    return cmd + (["--gpus", ",".join(map(str, range(gpus)))] if gpus > 1 else [])


def run_training(staged: Path, input_root: Path, working: Path) -> TrainStatus:
    """The kernel's work; returns (and writes to working/tgs-train.json) its status. With an
    earlier kernel's run attached it continues that run with `--resume` (the staged config must
    hold what the run's checkpoints hold: `tgs run` refuses other keys than the runtime ones)."""
    t0, limit = time.time(), session_minutes()
    cfg = load_config(staged / TRAIN_CONFIG)
    check_budget(cfg, limit)
    working.mkdir(parents=True, exist_ok=True)
    run_dir, earlier = working / RUN, _earlier_run(input_root, staged)
    resume_from = StageInfo.read(staged / StageInfo.FILE).extra.get("resume_from")
    if resume_from and earlier is None:
        raise TGSError(
            f"this kernel continues {resume_from}'s run, but no run/config.yaml of its output is "
            f"attached under {input_root}: is {resume_from} a finished tgs training kernel?"
        )
    if earlier is not None and not run_dir.exists():
        shutil.copytree(earlier, run_dir)  # the earlier session's run, continued with --resume
        (run_dir / LOCK_FILE).unlink(missing_ok=True)  # that session is over: its lock is stale
    scratch = Path(tempfile.mkdtemp(prefix="tgs-train-"))
    data = prepare_folder(_competition(input_root), scratch / "data")  # input is read-only
    cmd = run_command(staged / TRAIN_CONFIG, data, run_dir, earlier is not None, gpu_count())
    path = os.pathsep.join(filter(None, [str(staged), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    left = 60 * (limit - STOP_MINUTES) - (time.time() - t0)
    proc = subprocess.Popen(cmd, cwd=working, env=env, start_new_session=True)
    try:
        rc, stopped = proc.wait(timeout=max(1.0, left)), False
    except subprocess.TimeoutExpired:  # the session ends soon: stop, keep what is saved
        os.killpg(proc.pid, signal.SIGKILL)
        rc, stopped = proc.wait(), True
    subs = sorted((working / "submissions").glob("*.csv"), key=lambda p: p.stat().st_mtime)
    finished = rc == 0 and bool(subs)
    if finished:
        shutil.copyfile(subs[-1], working / SUBMISSION)
    status = TrainStatus(
        run=cfg.name,
        finished=finished,
        stopped_at_session_limit=stopped,
        exit_code=rc,
        resumed=earlier is not None,
        gpu=gpu_name(),
        seconds=round(time.time() - t0, 1),
        submission=subs[-1].name if finished else None,
        output_gb=round(_size(working) / 1e9, 3),
        output_limit_gb=OUTPUT_LIMIT_GB,
    )
    status.write(working / STATUS)
    if status.output_gb > 0.9 * OUTPUT_LIMIT_GB:
        log.warning(
            "warning: /kaggle/working holds %.1f GB; Kaggle keeps at most %d GB",
            status.output_gb,
            OUTPUT_LIMIT_GB,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    if rc != 0 and not stopped:
        raise TGSError(f"tgs run failed in the kernel (exit {rc}); see the log above")
    return status


def _size(folder: Path) -> int:
    """Bytes of the files under `folder` (Kaggle keeps OUTPUT_LIMIT_GB of the working folder)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
