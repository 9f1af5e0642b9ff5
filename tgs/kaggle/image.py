"""In a kernel: the packages tgs takes from Kaggle's image (torch, timm, albumentations: whatever
versions the image has today), checked against the ranges tgs needs (pyproject.toml's) in the
kernel's first seconds, from their metadata, before anything imports them. With the internet on
(the training kernel) the missing or out-of-range ones are installed with pip; with it off (the
inference kernel) the kernel stops at once, naming what is wrong, rather than failing an hour in.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping

from tgs.core.errors import TGSError

log = logging.getLogger(__name__)
# the ranges of pyproject.toml's dependencies (tests/kaggle/test_image.py checks they agree)
TRAINING = {"torch": ">=2.1", "timm": ">=1.0", "albumentations": ">=2.0"}
INFERENCE = {"torch": ">=2.1"}  # no augmentation; timm only with smp (see `inference_needs`)
_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}
_CLAUSE = re.compile(r"^\s*(>=|<=|==|>|<)\s*([0-9][0-9.]*)\s*$")


def inference_needs(smp_bundled: bool) -> dict[str, str]:
    """What the inference kernel needs of the image: torch, and timm for smp's encoders."""
    return {**INFERENCE, "timm": TRAINING["timm"]} if smp_bundled else dict(INFERENCE)


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading release numbers of a version ("2.5.1+cu121" -> (2, 5, 1))."""
    found = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(x) for x in found.group(0).split(".")) if found else ()


def satisfies(version: str, spec: str) -> bool:
    """Whether `version` meets every clause of `spec` (">=2.0", ">=1.0,<2")."""
    have = version_tuple(version)
    for clause in spec.split(","):
        found = _CLAUSE.match(clause)
        if not found:
            raise TGSError(f"version range {spec!r}: cannot read {clause!r}")
        want = version_tuple(found.group(2))
        width = max(len(have), len(want))
        a, b = (v + (0,) * (width - len(v)) for v in (have, want))
        if not _OPS[found.group(1)](a, b):
            return False
    return True


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def problems(
    needs: Mapping[str, str], version_of: Callable[[str], str | None] = _installed
) -> list[str]:
    """What the environment lacks of `needs` ({package: range}), one phrase each."""
    wrong = []
    for name, spec in needs.items():
        have = version_of(name)
        if have is None:
            wrong.append(f"{name} is not installed (tgs needs {name}{spec})")
        elif not satisfies(have, spec):
            wrong.append(f"{name} {have} is installed (tgs needs {name}{spec})")
    return wrong


def online(host: str = "pypi.org", timeout: float = 5.0) -> bool:
    """Whether `host` resolves within `timeout` seconds (a kernel with its internet off: no)."""
    answer: list[bool] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, 443)
            answer.append(True)
        except OSError:
            answer.append(False)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answer and answer[0])


def pip_install(specs: list[str]) -> None:
    """`pip install SPECS` into this Python; TGSError with pip's last lines when it fails."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input", *specs]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise TGSError(f"pip install {' '.join(specs)} failed (exit {done.returncode}): {tail}")


def ensure_packages(
    needs: Mapping[str, str],
    *,
    internet: bool,
    version_of: Callable[[str], str | None] = _installed,
    is_online: Callable[[], bool] = online,
    install: Callable[[list[str]], None] = pip_install,
) -> list[str]:
    """Check the image's packages against `needs`; with `internet` (and the network answering)
    install the wrong ones, else stop (TGSError naming each). Returns what was installed."""
    wrong = problems(needs, version_of)
    if not wrong:
        return []
    said = "; ".join(wrong)
    if not internet:
        raise TGSError(
            f"Kaggle's image does not have what tgs needs: {said}. This kernel runs with the "
            "internet off, so it cannot install them: run it with a Kaggle image that has them, "
            "or train with `tgs kaggle train` (internet on), which installs them"
        )
    if not is_online():
        raise TGSError(
            f"Kaggle's image does not have what tgs needs: {said}, and the kernel cannot reach "
            "pypi.org to install them: turn the kernel's internet on (a phone-verified account "
            "is needed for it) and push again"
        )
    specs = [f"{name}{needs[name]}" for name in needs if problems({name: needs[name]}, version_of)]
    log.info("installing %s (Kaggle's image: %s)", " ".join(specs), said)
    install(specs)
    still = problems(needs, version_of)
    if still:
        raise TGSError(f"after pip install {' '.join(specs)}: {'; '.join(still)}")
    return specs
