"""One writer per run folder (tgs.run.lock): a second writer refuses at once naming the holder,
a killed holder's lock is taken over with a warning, the processes a writer starts write under
its lock (and keep it held if the writer is killed), readers are not blocked."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from tests.helpers import tiny_yaml
from tgs.cli.main import main
from tgs.run.lock import LOCK_FILE, RunLockedError, held_fds, run_lock

HOLD = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    from tgs.run.lock import held_fds, run_lock
    with run_lock(sys.argv[1]):
        if sys.argv[2] == "child":  # a fold child that outlives its killed parent
            code = "from tgs.run.lock import run_lock; import os, sys, time\\n" \\
                "with run_lock(sys.argv[1]):\\n    print(os.getpid(), flush=True); time.sleep(60)"
            child = subprocess.Popen(
                [sys.executable, "-c", code, sys.argv[1]], pass_fds=held_fds(),
                stdout=subprocess.PIPE, text=True,
            )
            print(child.stdout.readline().strip(), flush=True)  # it holds the lock now
        print("holding", flush=True)
        if sys.argv[2] in ("die", "child"):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
    """
)


def _holder(folder, mode: str = "hold") -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), mode], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().strip()
    if mode == "child":  # the child's pid first
        proc.child_pid = int(line)
        line = proc.stdout.readline().strip()
    assert line == "holding", line
    return proc


def test_a_second_writer_refuses_naming_the_holder_and_readers_go_on(tmp_path, synth_dir, capsys):
    run = tmp_path / "run"
    proc = _holder(run)
    try:
        with pytest.raises(RunLockedError) as e:
            with run_lock(run):
                pass
        said = str(e.value)
        assert f"{run} is being written by another tgs process (pid {proc.pid} on" in said
        assert socket.gethostname() in said and "--run NEW" in said
        cfg = tmp_path / "tiny.yaml"
        cfg.write_text(tiny_yaml())
        again = ["run", "--config", str(cfg), "--data", str(synth_dir), "--run", str(run)]
        assert main([*again, "--resume"]) == 1  # a stage refuses the same way, --resume or not
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert (run / LOCK_FILE).read_text().startswith("{")  # a reader reads the folder
    finally:
        proc.kill()
        proc.wait()
    with run_lock(run):  # free again (a killed holder's flock is dropped by the kernel)
        pass


def test_a_killed_writers_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    proc = _holder(run, "die")
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with caplog.at_level(logging.WARNING, logger="tgs"):
        with run_lock(run):
            assert f"pid {os.getpid()}" in (run / LOCK_FILE).read_text().replace('"pid": ', "pid ")
    assert f"taking over the lock left by pid {proc.pid} on {socket.gethostname()}" in caplog.text
    assert (run / LOCK_FILE).read_text() == ""  # released: an empty lock file


def test_children_write_under_the_lock_and_keep_it_if_the_parent_is_killed(tmp_path):
    run = tmp_path / "run"
    with run_lock(run):
        with run_lock(run):  # re-entrant in one process
            assert len(held_fds()) == 1
        code = "import sys; from tgs.run.lock import run_lock\nwith run_lock(sys.argv[1]): pass"
        child = subprocess.run([sys.executable, "-c", code, str(run)], pass_fds=held_fds())
        assert child.returncode == 0  # a fold child inherits its parent's lock
    proc = _holder(run, "child")  # the parent is killed, its child still runs
    proc.wait()
    try:
        with pytest.raises(RunLockedError, match="or the fold processes it started"):
            with run_lock(run):
                pass
    finally:
        os.kill(proc.child_pid, signal.SIGKILL)
    for _ in range(50):  # once the child is gone too, the lock is free
        try:
            with run_lock(run):
                break
        except RunLockedError:
            time.sleep(0.1)
    else:
        pytest.fail("the lock stayed held after every holder was gone")


WRITERS = [
    (["threshold", "--run", "r"], "r"),
    (["predict", "--run", "r"], "r"),
    (["report", "--run", "r"], "r"),
    (["pseudo", "--run", "r", "--out", "p"], "r"),
    (["train", "--run", "r", "--fold", "0", "--resume"], "r"),
    (["blend", "--out", "b"], "b"),
    (["blend", "r", "r", "--out", "b", "--no-predict"], "b"),
    (["kaggle", "push-kernel", "r", "--dry-run", "--user", "alice"], "build/kaggle/r"),
]


@pytest.mark.slow  # trains or spawns processes
@pytest.mark.parametrize("command, folder", WRITERS, ids=[" ".join(w[0][:2]) for w in WRITERS])
def test_every_writer_refuses_a_folder_another_process_writes(
    made, tmp_path, monkeypatch, capsys, command, folder
):
    for part in ("r", "b", "folds"):
        shutil.copytree(made / part, tmp_path / part)
    monkeypatch.chdir(tmp_path)
    proc = _holder(tmp_path / folder)
    try:
        before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
        assert main(command) == 1
        assert (
            f"is being written by another tgs process (pid {proc.pid} on" in capsys.readouterr().err
        )
        assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before
    finally:
        proc.kill()
        proc.wait()
