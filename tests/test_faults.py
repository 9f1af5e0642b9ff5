"""Killed anywhere, resumed to the same bytes; a full disk at any write, a clear error and nothing
half-written, then resumed to the same bytes. Faults are injected into real `tgs run` processes
with TGS_FAULT (tgs/core/faults.py): SIGKILL at a point, or ENOSPC from a write."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, tiny_yaml
from tgs.core.faults import ENV

CONFIG = tiny_yaml(name="f", threads=1, max_train_batches=2, epochs=2)
# Kill points in the order a run meets them (2 folds x 2 epochs of 2 steps): each process of
# the chain dies at its point, the next resumes. Inside fold 0's second epoch, while its
# checkpoints are written, inside fold 1's first epoch, while its log, OOF and summary are
# written, during the search, while the thresholds are written, during predict, while the
# submission and the report are written
KILLS = [
    "step#3",
    "write:last.pt#1",
    "write:best.pt#1",
    "step#2",
    "write:log.csv#2",
    "write:oof.npz#1",
    "write:summary.json#1",
    "write:search.npz#1",
    "write:thresholds.json#1",
    "predict#1",
    "write:{name}-cv*.csv#1",
    "writedir:report#1",
]
# --jobs 2: both fold processes die at their point, then the parent reports the failure
PARALLEL_KILLS = ["write:last.pt#1", "step#3", "write:oof.npz#1"]
# ENOSPC at each kind of write: checkpoint, log, OOF, search, thresholds, submission, report
FULL = [
    "write:last.pt#1",
    "write:log.csv#3",
    "write:oof.npz#1",
    "write:search.npz#1",
    "write:thresholds.json#1",
    "write:{name}-cv*.csv#1",
    "writedir:report#1",
]


def _tgs(cwd: Path, args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if fault:
        env[ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "tgs", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def _run(cwd: Path, data: Path, name: str, *extra: str) -> list[str]:
    return ["run", "--config", "f.yaml", "--data", str(data), "--run", name, *extra]


def _results(cwd: Path, name: str) -> dict[str, bytes]:
    """What must not change: the submission, every fold's OOF and thresholds.json."""
    (sub,) = (cwd / "submissions").glob(f"{name}-cv*.csv")
    files = {"submission": sub, "thresholds.json": cwd / name / "thresholds.json"}
    files.update({f"oof{k}": cwd / name / f"fold{k}" / "oof.npz" for k in (0, 1)})
    return {k: p.read_bytes() for k, p in files.items()}


def _leftovers(cwd: Path) -> list[str]:
    """Temporary files of a write that did not finish (atomic writes leave none)."""
    return [str(p) for p in cwd.rglob(".*.tmp")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """120 train images: a fold's epoch has 2 steps, as the kill points assume."""
    from tgs.data.synth import synth

    return synth(tmp_path_factory.mktemp("data") / "synth", n_train=120, n_test=40, seed=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> tuple[Path, dict[str, bytes]]:
    """A run never interrupted: what every faulted run must end as, byte for byte."""
    cwd = tmp_path_factory.mktemp("faults")
    (cwd / "f.yaml").write_text(CONFIG)
    done = _tgs(cwd, _run(cwd, data, "ref"))
    assert done.returncode == 0, done.stderr[-2000:]
    return cwd, _results(cwd, "ref")


def _chain(cwd: Path, data: Path, name: str, faults: list[str], kind: str, *extra: str):
    """Run `tgs run` into NAME once per fault (the first fresh, then --resume), each dying or
    failing at its fault ({name}: the run's name), then once more to the end; returns what
    each faulted process printed (stdout, then stderr)."""
    said = []
    for i, point in enumerate(faults):
        args = _run(cwd, data, name, *extra, *(["--resume"] if i else []))
        proc = _tgs(cwd, args, f"{kind}@{point.format(name=name)}")
        if kind == "kill" and not extra:
            assert proc.returncode == -signal.SIGKILL, (point, proc.stderr[-1500:])
        else:  # a fold child killed (the parent fails), or a full disk
            assert proc.returncode == 1, (point, proc.returncode, proc.stderr[-1500:])
        said.append(proc.stdout + proc.stderr)
        if kind == "enospc":  # a failed write cleans up at once (a kill cannot: --resume does)
            assert not _leftovers(cwd), (point, _leftovers(cwd))
    done = _tgs(cwd, _run(cwd, data, name, *extra, "--resume"))
    assert done.returncode == 0, done.stderr[-2000:]
    return said


@pytest.mark.slow  # trains or spawns processes
def test_killed_at_every_stage_then_resumed_writes_the_same_bytes(reference, data):
    cwd, expected = reference
    said = _chain(cwd, data, "k", KILLS, "kill")
    assert _results(cwd, "k") == expected
    assert not _leftovers(cwd)
    assert "taking over the lock left by pid" in said[1]  # the killed writer's lock


@pytest.mark.slow  # trains or spawns processes
def test_folds_killed_in_parallel_then_resumed_write_the_same_bytes(reference, data):
    cwd, expected = reference
    said = _chain(cwd, data, "p", PARALLEL_KILLS, "kill", "--jobs", "2")
    assert all("fold" in s.strip().splitlines()[-1] for s in said), said[0][-500:]
    assert _results(cwd, "p") == expected
    assert not _leftovers(cwd)


@pytest.mark.slow  # trains or spawns processes
def test_a_full_disk_at_each_write_is_named_and_leaves_nothing(reference, data):
    cwd, expected = reference
    said = _chain(cwd, data, "d", FULL, "enospc")
    for point, err in zip(FULL, said, strict=True):
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: no space left on the device writing "), (point, last)
        where = point.split(":")[1].split("#")[0].format(name="d").split("*")
        assert all(part in last for part in where), (point, last)
        assert " free there, at least " in last and "--resume" in last, last
        assert "Traceback" not in err, err[-1500:]
    assert not _leftovers(cwd)
    assert _results(cwd, "d") == expected


def test_a_hang_fault_marks_its_file_and_blocks_until_killed(tmp_path):
    """`hang` stops a process alive at a known point (the end of a Kaggle session, in the
    kernel's tests): it creates $TGS_FAULT_MARK there and goes no further."""
    from tgs.core.faults import MARK_ENV

    mark, after = tmp_path / "hang.mark", tmp_path / "after"
    code = (
        "from pathlib import Path; from tgs.core.faults import fault_point\n"
        "for _ in range(3): fault_point('write:last.pt')\n"
        f"Path({str(after)!r}).touch()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update({ENV: "hang@write:last.pt#2", MARK_ENV: str(mark)})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        for _ in range(600):  # until the mark appears, or the process ends without it
            if mark.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert mark.read_text() == f"{proc.pid} hangs at write:last.pt\n"
        assert proc.poll() is None and not after.exists()  # alive, and no further
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not after.exists()
