"""What a run records about where it ran: git commit, package versions, host and device."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
    )


def git_commit() -> str:
    """Commit of the tgs source tree (with "-dirty" for uncommitted changes), or "unknown"."""
    try:
        head = _git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = _git("status", "--porcelain").stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    """The CPU's model name (e.g. "AMD EPYC", "Intel(R) Xeon(R) Platinum 8488C")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The first visible CUDA device's name (e.g. "NVIDIA H100 80GB HBM3"); None without one."""
    import torch  # here: meta.json is written by commands that need no torch otherwise

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def gpu_count() -> int:
    """How many CUDA devices are visible (0 without CUDA)."""
    import torch  # here, as in gpu_name

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on (those importable here)."""
    out = {"python": platform.python_version()}
    for name in ("torch", "segmentation-models-pytorch", "timm", "numpy", "albumentations"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def environment() -> dict:
    """commit, versions, host CPU and cores: recorded in a run's meta.json."""
    return {
        "commit": git_commit(),
        "versions": versions(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
    }
