"""In a kernel: what Kaggle attached, found under any of its mount layouts.

Kaggle mounts each input under /kaggle/input: older kernels see /kaggle/input/<slug>; newer
ones /kaggle/input/competitions/<slug>, /kaggle/input/datasets/<owner>/<slug> and
/kaggle/input/notebooks/<owner>/<slug> (another kernel's output). A staged dataset's folders
were uploaded as zips (`--dir-mode zip`): Kaggle shows them unpacked (tgs/, run/...), and a
mount that shows NAME.zip itself is unpacked to a scratch folder here. Nothing is ever written
under /kaggle/input (read-only).
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath

from tgs import COMPETITION
from tgs.core.errors import TGSError
from tgs.kaggle.kernel_boot import DEPTH, unpacked
from tgs.run.layout import CONFIG

RUN = "run"  # a training kernel's run folder in its output; the inference dataset's run copy


def find_input(root: Path, pattern: str, depth: int = DEPTH) -> list[Path]:
    """Paths matching `pattern` (relative) in the folders up to `depth` levels below `root`,
    the shallowest first."""
    return [p for d in range(depth + 1) for p in sorted(root.glob("*/" * d + pattern))]


def competition_dir(root: Path) -> Path:
    """The attached competition data (/kaggle/input/<slug> or .../competitions/<slug>)."""
    found = [p for p in find_input(root, COMPETITION, depth=2) if p.is_dir()]
    if not found:
        raise TGSError(
            f"competition data not attached: no {COMPETITION} folder under {root} (Kaggle "
            "attaches it only once the competition's rules are accepted on the account)"
        )
    return found[0]


def staged_file(staged: Path, relpath: str, scratch: Path) -> Path | None:
    """The file or folder `relpath` (e.g. "run", "run/config.yaml", "weights.pth") of the staged
    dataset `staged`: as it is there, or inside its top folder's zip (unpacked into `scratch`).
    None when the dataset has no such thing."""
    direct = staged / relpath
    if direct.exists():
        return direct
    top, *rest = PurePosixPath(relpath).parts
    folder = unpacked(staged, top, scratch) if rest or (staged / f"{top}.zip").is_file() else None
    found = folder.joinpath(*rest) if folder is not None else None
    return found if found is not None and found.exists() else None


def bundle_on_path(staged: Path, name: str, scratch: Path) -> Path | None:
    """Put the bundled package `name` (e.g. segmentation_models_pytorch) first on sys.path;
    returns the folder that holds it (None when the dataset has none)."""
    package = staged_file(staged, name, scratch)
    if package is None:
        return None
    if str(package.parent) not in sys.path:
        sys.path.insert(0, str(package.parent))
    return package.parent


def folder_on_path(staged: Path, name: str, scratch: Path) -> Path | None:
    """Put the staged folder `name` itself (e.g. packages/, installed wheels with their
    dist-info) first on sys.path; returns it (None when the dataset has none)."""
    folder = staged_file(staged, name, scratch)
    if folder is None:
        return None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def earlier_run(root: Path, staged: Path) -> Path | None:
    """An attached earlier training kernel's run folder (its output's run/config.yaml; the
    staged dataset `staged` excluded), the shallowest first."""
    found = [p.parent for p in find_input(root, f"{RUN}/{CONFIG}") if staged not in p.parents]
    return found[0] if found else None
