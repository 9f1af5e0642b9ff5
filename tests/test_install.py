"""tgs installed NON-editable from this checkout, used from a folder outside it, as a Kaggler
would: a wheel built here, installed into a fresh venv that sees the dependencies of the
environment the tests run in (a virtualenv or the system Python: a .pth file lists its
site-packages; nothing is fetched), then the `tgs` command: synthetic data, a tiny run whose
submission validates, and a kernel push dry run from the shipped templates."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import tgs
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


BUILD_INPUTS = ("pyproject.toml", "README.md", "tgs")  # all that setuptools reads for the wheel

CREDENTIALS = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR")


@dataclass
class Installed:
    """A venv holding tgs from a wheel, the environment to run it in and a work folder."""

    venv: Path
    env: dict[str, str]
    work: Path
    seconds: dict[str, float]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run `cmd`; its stdout, or a failure showing the end of its output."""
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {out.returncode}:\n"
        f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout


def _copy_sources(dst: Path) -> Path:
    """The build inputs of the checkout (as they are now, without caches) copied to `dst`, so
    that building writes nothing into the checkout."""
    dst.mkdir()
    for name in BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def _fake_credentials(folder: Path) -> Path:
    """A KAGGLE_CONFIG_DIR holding a made-up kaggle.json (owner-only, as the client wants)."""
    folder.mkdir()
    key = folder / "kaggle.json"
    key.write_text(json.dumps({"username": "alice", "key": "0" * 32}))
    key.chmod(0o600)
    return folder


def running_site_packages() -> list[str]:
    """The site-packages folders of the interpreter running the tests: a virtualenv's own (where
    README's `pip install` put torch, smp, ...) or the system Python's."""
    found = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        found.append(site.getusersitepackages())
    return list(dict.fromkeys(p for p in found if Path(p).is_dir()))


def _see_running_site_packages(venv: Path) -> Path:
    """A .pth file in `venv` that appends the running interpreter's site-packages to its path:
    the venv's own packages (tgs from the wheel) come first, the dependencies after. Plain path
    lines: the .pth files of those folders (an editable tgs of the checkout) are not run."""
    purelib = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        cwd=venv,
    ).strip()
    pth = Path(purelib) / "tgs-test-dependencies.pth"
    pth.write_text("".join(f"{p}\n" for p in running_site_packages()))
    return pth


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("install")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    src = _copy_sources(tmp / "src")
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(tmp / "wheels"), str(src)],
        cwd=tmp,
    )
    (wheel,) = (tmp / "wheels").glob("tgs-*.whl")
    seconds["build wheel"] = time.perf_counter() - start

    start = time.perf_counter()
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    _see_running_site_packages(venv)
    # --ignore-installed: a tgs installed here (editable, by requirements-dev.txt) must not count
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        + ["--ignore-installed", str(wheel)],
        cwd=tmp,
    )
    seconds["venv + install"] = time.perf_counter() - start

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", *CREDENTIALS)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["KAGGLE_CONFIG_DIR"] = str(_fake_credentials(tmp / "kaggle"))
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    work = tmp / "work"
    work.mkdir()
    return Installed(venv, env, work, seconds)


def test_the_venv_imports_the_installed_copy_with_its_package_data(installed):
    """tgs, its version and its shipped configs and kernel templates come from the venv, and
    nothing of the checkout is on sys.path."""
    code = (
        "import json, sys, importlib.metadata as md, pathlib, torch, tgs\n"
        "from tgs.resources import KERNELS_DIR, shipped_configs\n"
        "print(json.dumps({'file': tgs.__file__, 'version': tgs.__version__,"
        " 'dist': md.version('tgs'), 'path': sys.path, 'configs': shipped_configs(),"
        " 'kernels': sorted(p.name for p in KERNELS_DIR.iterdir() if p.is_file()),"
        " 'torch': str(pathlib.Path(torch.__file__).resolve().parents[1])}))"
    )
    found = json.loads(_run([str(installed.python), "-c", code], installed.work, installed.env))
    assert Path(found["file"]).is_relative_to(installed.venv)
    deps = {Path(p).resolve() for p in running_site_packages()}  # may lie in ROOT/.venv
    checkout = [p for p in found["path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    assert not [p for p in checkout if Path(p).resolve() not in deps]
    assert found["torch"] in {str(d) for d in deps}  # the tests' torch, not the base Python's
    assert found["version"] == found["dist"] == tgs.__version__
    assert {"cpu", "demo"} <= set(found["configs"])
    assert found["kernels"] == ["kernel-metadata.json", "tgs_inference.py", "tgs_train.py"]


def test_tgs_command_runs_a_tiny_job_and_stages_its_kernel(installed):
    """`tgs synth`, a one-epoch `tgs run` on a shipped config, `tgs validate` of its submission
    and `tgs kaggle push-kernel --dry-run`, all from a folder outside the checkout."""
    work, env = installed.work, installed.env
    tgs_cmd = str(installed.venv / "bin" / "tgs")
    seconds = dict(installed.seconds)
    steps = {
        "synth": ["synth", "--out", "d", "--n-train", "60", "--n-test", "20"],
        "run": ["run", "--config", "demo", "--data", "d", "--run", "runs/t", "budget_minutes=0"]
        + ["epochs=1", "model_kwargs.n_filters=4", "size=32", "threads=1", "--no-report"],
    }
    for step, args in steps.items():
        start = time.perf_counter()
        _run([tgs_cmd, *args], work, env)
        seconds[step] = time.perf_counter() - start

    (submission,) = (work / "submissions").glob("t-cv*.csv")
    start = time.perf_counter()
    _run([tgs_cmd, "validate", str(submission), "--sample", "d/sample_submission.csv"], work, env)
    seconds["validate"] = time.perf_counter() - start

    start = time.perf_counter()
    push = ["kaggle", "push-kernel", "runs/t", "--dry-run", "--user", "alice"]
    printed = _run([tgs_cmd, *push], work, env)
    seconds["push-kernel --dry-run"] = time.perf_counter() - start
    assert "# dry run" in printed and "kernels push" in printed
    staged = work / "build" / "kaggle" / "t"
    assert (staged / "kernel" / "kernel-metadata.json").is_file()
    staged_tgs = staged / "dataset" / "tgs"
    assert (staged_tgs / "resources" / "kernels" / "tgs_inference.py").is_file()
    assert not list(staged_tgs.rglob("__pycache__")) and not list(staged.rglob("*.dist-info"))

    print("\ninstalled tgs, seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(f"total {sum(seconds.values()):.1f}")
