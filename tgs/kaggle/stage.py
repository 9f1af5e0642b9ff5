"""Kaggle kernels: stage a run as a dataset + an inference kernel (names within Kaggle's limits),
and the kernel's own work, which runs offline and imports nothing from training."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
import secrets
import shutil
import time
import unicodedata
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from tgs import COMPETITION
from tgs.core.errors import TGSError
from tgs.core.fileio import atomic_dir
from tgs.core.meta import git_commit
from tgs.kaggle import kernel_boot
from tgs.kaggle.limits import DEFAULT_ACCELERATOR
from tgs.resources import KERNELS_DIR
from tgs.run.folder import Run
from tgs.run.records import StagedWeights, StageInfo

if TYPE_CHECKING:  # torch: not for `tgs kaggle submit`
    from tgs.models.weights import Packaged

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # tgs/


KERNEL_TEMPLATE_DIR = KERNELS_DIR


STAGED_RUN = "run"  # the dataset's copy of the run folder


STAGE_INFO = StageInfo.FILE


SUBMISSION = "submission.csv"


KERNEL_LOG = "tgs-kernel.log"


INFERENCE_SCRIPT = "tgs_inference.py"  # the template kernel-metadata.json's code_file


SMP = "segmentation_models_pytorch"


PACKAGES = "packages"  # a training dataset's installed wheels (the packaged encoder weights)


NAME_MAX = 50  # Kaggle: dataset slugs and titles 6-50 characters, kernel titles 5-50


_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


# what an installation adds to a wheel's files (direct_url.json: where pip got it from here)
_NOT_SHIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "direct_url.json", "INSTALLER")


BOOT_MARKER = "# @KERNEL_BOOT@"  # the templates' line that staging replaces by kernel_boot's code
_STAGE_LINE = re.compile(r"^STAGE_ID = .*$", re.M)


def new_stage_id() -> str:
    """An id for one staging: written into tgs-stage.json and into the kernel's script."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def kernel_script(template: str, stage_id: str) -> str:
    """The kernel script: `template` with its marker line replaced by kernel_boot.py's code
    (its docstring left out, STAGE_ID set to `stage_id`)."""
    source = Path(kernel_boot.__file__).read_text()
    body = source.splitlines(keepends=True)[ast.parse(source).body[0].end_lineno :]
    line = f"STAGE_ID = {json.dumps(stage_id)}"
    boot, n = _STAGE_LINE.subn(line, "".join(body).strip("\n"), count=1)
    if BOOT_MARKER not in template or n != 1:
        raise TGSError("a kernel template lacks its boot marker, or kernel_boot.py its STAGE_ID")
    return template.replace(BOOT_MARKER, boot, 1)


def slugify(text: str) -> str:
    """Kaggle's slug of a title: ASCII (accents dropped), lowercase, other runs become '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _fit(prefix: str, name: str, suffix: str = "") -> str:
    """prefix + slug of `name` + suffix in at most NAME_MAX characters: a long name is cut and
    a hash of the whole name keeps it unique."""
    base = slugify(name) or "run"
    room = NAME_MAX - len(prefix) - len(suffix)
    if len(base) > room:
        digest = hashlib.sha1(name.encode()).hexdigest()[:6]
        base = f"{base[: room - 7].rstrip('-')}-{digest}"
    return f"{prefix}{base}{suffix}"


@dataclass
class KaggleNames:
    """A run's dataset slug/title and kernel title/slug, all within Kaggle's limits."""

    dataset_slug: str
    dataset_title: str
    kernel_title: str
    kernel_slug: str


def kaggle_names(
    run_name: str,
    dataset: str | None = None,
    title: str | None = None,
    train: bool = False,
    part: int = 1,
) -> KaggleNames:
    """Default names for a run (any name: long, spaces, non-ASCII), or the given ones checked.
    `train`: a training kernel's (part > 1: the session that continues part - 1)."""
    if train:
        suffix = f" part {part}" if part > 1 else ""
        defaults = (_fit("tgs-", run_name, "-train"), _fit("tgs train code ", run_name))
        defaults += (_fit("tgs train ", run_name, suffix),)
    else:
        defaults = (_fit("tgs-", run_name, "-weights"), _fit("tgs weights ", run_name))
        defaults += (_fit("tgs inference ", run_name),)
    names = KaggleNames(dataset or defaults[0], defaults[1], title or defaults[2], "")
    names.kernel_slug = slugify(names.kernel_title)
    if not (6 <= len(names.dataset_slug) <= NAME_MAX and _SLUG.match(names.dataset_slug)):
        raise TGSError(
            f"dataset slug {names.dataset_slug!r}: Kaggle needs 6-{NAME_MAX} characters of a-z, "
            "0-9 and single '-' inside"
        )
    if not (5 <= len(names.kernel_title) <= NAME_MAX and len(names.kernel_slug) >= 5):
        raise TGSError(
            f"kernel title {names.kernel_title!r}: Kaggle needs 5-{NAME_MAX} characters, 5 of "
            "them letters or digits"
        )
    return names


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)


def stage_dataset(run: Run, out: Path, dataset_ref: str, title: str, *, stage_id: str) -> Path:
    """Dataset folder: tgs/ (source), segmentation_models_pytorch/ for smp runs (Kaggle's image
    lacks it), run/ (config, thresholds, meta and the checkpoints predict uses), tgs-stage.json
    (with `stage_id`, the kernel's), metadata."""
    cfg = run.config()
    files = run.prediction_files(run.thresholds())
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise TGSError(f"cannot stage {run.root}: missing {', '.join(missing)}")
    from tgs.models.registry import smp_needed_by  # torch: not for `tgs kaggle submit`

    with atomic_dir(out, overwrite=True) as tmp:  # a full disk leaves no half-staged dataset
        shutil.copytree(PACKAGE_DIR, tmp / "tgs", ignore=_IGNORE)
        staged = Run(tmp / STAGED_RUN)
        for f in [run.paths.config, run.paths.thresholds, run.paths.meta, *files]:
            if f.is_file():
                _copy(f, staged.root / run.relative(f))
        models = [run.relative(f) for f in files]
        info = StageInfo(run=run.name, models=models, stage_id=stage_id)
        _finish_dataset(tmp, info, smp_needed_by(cfg), dataset_ref, title)
    return out


def _finish_dataset(
    out: Path, info: StageInfo, smp_needed_by: str | None, ref: str, title: str
) -> Path:
    """smp bundled when something needs it (`smp_needed_by`), tgs-stage.json (`info`, stamped)
    and the dataset's metadata, in the staged dataset folder `out`."""
    smp = _bundle_smp(smp_needed_by, out)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    replace(info, smp=smp, commit=git_commit(), staged=stamp).write(out / STAGE_INFO)
    meta = {"title": title, "id": ref, "licenses": [{"name": "CC0-1.0"}]}
    (out / "dataset-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _write_kernel(out: Path, script: str, stage_id: str, **fields) -> Path:
    """Kernel folder `out`: the template `script` made whole (`kernel_script`, `stage_id`) and
    kernel-metadata.json, the template's filled with `fields` and the competition attached."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    template = json.loads((KERNEL_TEMPLATE_DIR / "kernel-metadata.json").read_text())
    text = kernel_script((KERNEL_TEMPLATE_DIR / script).read_text(), stage_id)
    (out / script).write_text(text)
    template.update(code_file=script, competition_sources=[COMPETITION], **fields)
    (out / "kernel-metadata.json").write_text(json.dumps(template, indent=2) + "\n")
    return out


def stage_kernel(
    out: Path, kernel_ref: str, title: str, dataset_ref: str, gpu: bool, *, stage_id: str
) -> Path:
    """Kernel folder: the entry script (for the dataset of `stage_id`) and its filled
    kernel-metadata.json (internet off)."""
    return _write_kernel(
        out,
        INFERENCE_SCRIPT,
        stage_id,
        id=kernel_ref,
        title=title,
        enable_gpu=gpu,
        enable_internet=False,
        dataset_sources=[dataset_ref],
    )


# -- the training kernel ------------------------------------------------------------------------
TRAIN_CONFIG = "train-config.yaml"  # the staged dataset's resolved config
TRAIN_SCRIPT = "tgs_train.py"


def _bundle_smp(needed_by: str | None, out: Path) -> str | None:
    """Copy segmentation_models_pytorch into `out` when something (`needed_by`: what, e.g.
    "model 'unet'") needs it: Kaggle's image lacks it. Its version, or None when not needed."""
    if needed_by is None:
        return None
    try:
        import segmentation_models_pytorch as smp  # optional: smp runs only
    except ImportError:
        raise TGSError(
            f"{needed_by} needs segmentation-models-pytorch here to bundle: "
            "pip install segmentation-models-pytorch"
        ) from None
    shutil.copytree(Path(smp.__file__).parent, out / SMP, ignore=_IGNORE)
    return smp.__version__


def _bundle_package(dist: str, module: str, out: Path) -> None:
    """Copy the installed distribution `dist` (its importable package `module` and its
    dist-info, which holds its version and LICENSE) into out/PACKAGES: on the kernel's path,
    importlib finds both there as it finds them installed here."""
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise TGSError(f"{dist} is not installed here: cannot bundle it")
    files = metadata.distribution(dist).files or []
    info = next((f.locate().parent for f in files if f.name == "METADATA"), None)
    if info is None:
        raise TGSError(f"{dist}: its dist-info (METADATA) is not found here: cannot bundle it")
    package = Path(found.origin).parent
    for src in (package, Path(info)):
        shutil.copytree(src, out / PACKAGES / src.name, ignore=_NOT_SHIPPED)


def _bundle_weights(weights: Packaged | None, out: Path) -> StagedWeights | None:
    """The packaged encoder weights (`weights`: their wheel) copied into out/PACKAGES, and
    what tgs-stage.json says of them; None when the run has none to carry."""
    if weights is None:
        return None
    _bundle_package(weights.dist, weights.module, out)
    staged = out / PACKAGES / weights.module / weights.file
    if not staged.is_file():
        raise TGSError(f"{weights.requirement}: no {weights.file} in its installed package")
    return StagedWeights(package=weights.requirement, sha256=weights.sha256, folder=PACKAGES)


def stage_training_dataset(
    config_text: str,
    name: str,
    smp_needed_by: str | None,
    out: Path,
    *,
    ref: str,
    title: str,
    resume_from: str | None = None,
    stage_id: str,
    weights: Packaged | None = None,
    internet: bool = True,
) -> Path:
    """Dataset folder for a training kernel: tgs/ (source), smp when the run needs it
    (`smp_needed_by`: what does), the wheel of its packaged encoder `weights` in packages/,
    train-config.yaml (`config_text`, the resolved config), tgs-stage.json (with `resume_from`,
    the kernel whose run it continues, `stage_id`, the kernel's, whether the kernel has the
    `internet`, and the weights staged), metadata."""
    with atomic_dir(out, overwrite=True) as tmp:  # a full disk leaves no half-staged dataset
        shutil.copytree(PACKAGE_DIR, tmp / "tgs", ignore=_IGNORE)
        (tmp / TRAIN_CONFIG).write_text(config_text)
        info = StageInfo(
            run=name,
            models=[],
            stage_id=stage_id,
            kind="train",
            resume_from=resume_from,
            internet=internet,
            weights=_bundle_weights(weights, tmp),
        )
        _finish_dataset(tmp, info, smp_needed_by, ref, title)
    return out


def stage_training_kernel(
    out: Path,
    kernel_ref: str,
    title: str,
    dataset_ref: str,
    *,
    accelerator: str = DEFAULT_ACCELERATOR,
    resume_from: str | None = None,
    stage_id: str,
    internet: bool = True,
) -> Path:
    """Kernel folder of a training kernel: tgs_train.py (for the dataset of `stage_id`) and its
    kernel-metadata.json (GPU on; `internet` on, the default, so hub weights and missing
    packages download there; the competition and the staged dataset attached; `resume_from`,
    an earlier training kernel, attached as a kernel source)."""
    return _write_kernel(
        out,
        TRAIN_SCRIPT,
        stage_id,
        id=kernel_ref,
        title=title,
        enable_gpu=True,
        enable_internet=internet,
        machine_shape=accelerator,
        dataset_sources=[dataset_ref],
        kernel_sources=[resume_from] if resume_from else [],
    )
