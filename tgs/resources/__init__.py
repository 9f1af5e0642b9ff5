"""Files shipped inside the package: the configs (`--config cpu` finds `configs/cpu.yaml`) and
the Kaggle kernel templates. Reads nothing at import."""

from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
CONFIGS_DIR = RESOURCES / "configs"
KERNELS_DIR = RESOURCES / "kernels"


def shipped_configs() -> list[str]:
    """Names of the configs shipped with tgs (`demo`, `cpu`, ...), sorted."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def find_config(name: str | os.PathLike) -> Path | None:
    """A config file: `name` itself when it is a file, else the shipped config of that name
    (`cpu`, `cpu.yaml` or `configs/cpu.yaml`), else None."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = CONFIGS_DIR / f"{stem}.yaml"
    if shipped.is_file() and (path.parent == Path(".") or path.parent.name == "configs"):
        return shipped
    return None
