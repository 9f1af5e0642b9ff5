"""The start of every tgs Kaggle kernel, before tgs can be imported: staging copies this file's
code into the kernel's script (tgs/resources/kernels/tgs_train.py, tgs_inference.py) with the
stage id filled in. It imports nothing from tgs.

The kernel finds the dataset it was staged with: the tgs-stage.json holding its stage id, under
any of Kaggle's mount layouts (/kaggle/input/<slug>, /kaggle/input/datasets/<owner>/<slug>...).
A dataset of another stage (Kaggle attached an older version) stops the kernel at once, saying
so. tgs is imported from that dataset: the folder `tgs/` (Kaggle unpacks the tgs.zip the client
uploaded) or, when the mount holds tgs.zip itself, its copy unpacked to a scratch folder.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

STAGE_ID = "@STAGE_ID@"  # staging writes the staged dataset's id here
STAGE_FILE = "tgs-stage.json"
DEPTH = 4  # /kaggle/input/datasets/<owner>/<slug>/... is 3 folders deep


def input_root() -> Path:
    """/kaggle/input (TGS_KAGGLE_INPUT: a folder laid out the same way)."""
    return Path(os.environ.get("TGS_KAGGLE_INPUT", "/kaggle/input"))


def working_dir() -> Path:
    """/kaggle/working (TGS_KAGGLE_WORKING: elsewhere)."""
    return Path(os.environ.get("TGS_KAGGLE_WORKING", "/kaggle/working"))


def stage_files(root: Path, depth: int = DEPTH) -> list[Path]:
    """Every tgs-stage.json in the folders up to `depth` levels below `root`."""
    return [p for d in range(depth + 1) for p in sorted(root.glob("*/" * d + STAGE_FILE))]


def find_stage(root: Path, stage_id: str) -> Path:
    """The attached dataset folder whose tgs-stage.json holds `stage_id`; SystemExit saying what
    is attached instead."""
    seen = []
    for path in stage_files(root):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and info.get("stage_id") == stage_id:
            return path.parent
        info = info if isinstance(info, dict) else {}
        seen.append(f"{path.parent} holds stage {info.get('stage_id')} ({info.get('staged')})")
    if not seen:
        raise SystemExit(
            f"tgs kernel: no dataset staged by tgs is attached under {root} (no {STAGE_FILE}): "
            "did Kaggle attach it? See the kernel's data sources"
        )
    raise SystemExit(
        f"tgs kernel: stage id mismatch: this kernel was pushed with stage {stage_id}, but "
        f"{'; '.join(seen)}. Kaggle attached another version of the dataset than the one "
        "pushed with this kernel; push again (tgs waits until Kaggle shows the new version)"
    )


def unpacked(staged: Path, name: str, scratch: Path) -> Path | None:
    """The staged folder `name`: staged/NAME when Kaggle unpacked the uploaded NAME.zip, else
    that zip unpacked into scratch/NAME (the input is read-only). None when neither is there."""
    folder = staged / name
    if folder.is_dir():
        return folder
    archive = staged / f"{name}.zip"
    if not archive.is_file():
        return None
    out = scratch / name
    if not out.is_dir():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(out)
    return out


def import_tgs(staged: Path, scratch: Path) -> Path:
    """Put the staged tgs first on sys.path; returns the folder that holds it."""
    tgs = unpacked(staged, "tgs", scratch)
    if tgs is None or not (tgs / "__init__.py").is_file():
        raise SystemExit(f"tgs kernel: {staged} holds neither tgs/ nor tgs.zip")
    sys.path.insert(0, str(tgs.parent))
    return tgs.parent


def run_kernel(entry: str) -> None:
    """The kernel: find the staged dataset, import tgs from it, run tgs.kaggle.<entry>_kernel;
    what stops it is said in one line (tgs's errors name the cause and what to do)."""
    root = input_root()
    staged = find_stage(root, STAGE_ID)
    scratch = Path(tempfile.mkdtemp(prefix="tgs-kernel-"))
    import_tgs(staged, scratch)
    from tgs.core.errors import TGSError

    module = importlib.import_module(f"tgs.kaggle.{entry}_kernel")
    try:
        module.main(staged, root, working_dir(), scratch)
    except TGSError as e:
        raise SystemExit(f"tgs kernel: error: {e}") from None
