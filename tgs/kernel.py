"""Kaggle kernels: stage a run as a dataset + an inference kernel, and the kernel's own work."""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

from tgs import COMPETITION
from tgs.errors import TGSError
from tgs.run import Run

PACKAGE_DIR = Path(__file__).resolve().parent
KERNEL_TEMPLATE_DIR = PACKAGE_DIR.parent / "kernels"
RUN_FILES = ("config.yaml", "thresholds.json", "meta.json")


def slugify(text: str) -> str:
    """Kaggle's slug of a title: lowercase, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def stage_dataset(run_dir: Path, out: Path, username: str, slug: str) -> Path:
    """Dataset folder: tgs/ source, run/ (config, thresholds, meta, foldK/best.pt), metadata."""
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            hint = " (run `python -m tgs threshold` first)" if name == "thresholds.json" else ""
            raise TGSError(f"{run_dir / name} missing: cannot stage the run{hint}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(PACKAGE_DIR, out / "tgs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out / "run").mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy2(run_dir / name, out / "run" / name)
    run = Run(run_dir)
    for f in run.all_model_files():  # the checkpoints predict uses (snapshots included)
        dest = out / "run" / run.relative(f)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    meta = {
        "title": f"tgs weights {run_dir.name}"[:50],
        "id": f"{username}/{slug}",
        "licenses": [{"name": "CC0-1.0"}],
    }
    (out / "dataset-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def stage_kernel(out: Path, username: str, kernel_title: str, dataset_slug: str, gpu: bool) -> Path:
    """Kernel folder: the entry script and its filled kernel-metadata.json."""
    if len(kernel_title) < 5:
        raise TGSError(f"kernel title {kernel_title!r} must have at least 5 characters")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    template = json.loads((KERNEL_TEMPLATE_DIR / "kernel-metadata.json").read_text())
    shutil.copy2(KERNEL_TEMPLATE_DIR / template["code_file"], out / template["code_file"])
    template.update(
        id=f"{username}/{slugify(kernel_title)}",
        title=kernel_title,
        enable_gpu=gpu,
        enable_internet=False,
        dataset_sources=[f"{username}/{dataset_slug}"],
        competition_sources=[COMPETITION],
    )
    (out / "kernel-metadata.json").write_text(json.dumps(template, indent=2) + "\n")
    return out


def find_competition_data(input_root: Path, working: Path) -> Path:
    """The competition's data folder under input_root, unpacking test.zip into working if needed."""
    comp = input_root / COMPETITION
    if not comp.is_dir():
        raise TGSError(f"competition data not attached: {comp} missing")
    if (comp / "test" / "images").is_dir():
        return comp
    if not (comp / "test.zip").is_file():
        raise TGSError(f"{comp} has neither test/images nor test.zip")
    data = working / "tgs-data"
    (data / "test").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(comp / "test.zip") as zf:
        zf.extractall(data / "test")
    for name in ("sample_submission.csv", "depths.csv"):
        if (comp / name).is_file():
            shutil.copy2(comp / name, data / name)
    return data


def run_inference(run_dir: Path, input_root: Path, working: Path) -> Path:
    """In the kernel: predict the test set with the staged run; returns submission.csv's path."""
    from tgs.predict import predict_run

    Run(run_dir).require()
    working.mkdir(parents=True, exist_ok=True)
    data = find_competition_data(input_root, working)
    return predict_run(run_dir, data, out=working / "submission.csv")


def push_kernel(
    run_dir: str | os.PathLike,
    username: str | None = None,
    dataset_slug: str | None = None,
    kernel_title: str | None = None,
    gpu: bool = False,
    dry_run: bool = False,
    message: str = "tgs push-kernel",
    staging: str | os.PathLike = "build/kaggle",
) -> list[list[str]]:
    """Stage RUN as a dataset and an inference kernel, then create/version and push them.

    Returns the kaggle commands (argument lists) in order. With `dry_run` nothing is called:
    the commands are returned (and printed by the CLI) and the staged folders are left in place.
    """
    from tgs.kaggle import KaggleError, find_credentials, run_kaggle, wait_dataset_ready

    run_dir = Path(run_dir)
    Run(run_dir).require()
    username = username or find_credentials().username
    if not username:
        raise KaggleError("cannot tell your Kaggle username from the credentials: pass --user")
    dataset_slug = dataset_slug or slugify(f"tgs-{run_dir.name}-weights")
    kernel_title = kernel_title or f"tgs inference {run_dir.name}"
    root = Path(staging) / run_dir.name
    ds_dir = stage_dataset(run_dir, root / "dataset", username, dataset_slug)
    k_dir = stage_kernel(root / "kernel", username, kernel_title, dataset_slug, gpu)
    ref = f"{username}/{dataset_slug}"
    create = ["datasets", "create", "-p", str(ds_dir), "--dir-mode", "zip"]
    version = ["datasets", "version", "-p", str(ds_dir), "-m", message, "--dir-mode", "zip"]
    push = ["kernels", "push", "-p", str(k_dir)]
    if dry_run:
        return [["datasets", "status", ref], create, version, push]
    try:
        run_kaggle(["datasets", "status", ref])
        upload = version
    except KaggleError as e:
        if "403" in str(e) or "401" in str(e):
            raise
        upload = create
    run_kaggle(upload)
    wait_dataset_ready(ref)
    run_kaggle(push)
    return [["datasets", "status", ref], upload, push]
