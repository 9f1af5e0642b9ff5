"""The inference kernel's own work (it runs offline and imports nothing from training): check
the image's packages, find the staged run under any mount layout, predict the test set; and
reading back the manifest its log holds."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from tgs.core.errors import TGSError
from tgs.kaggle.image import ensure_packages, inference_needs
from tgs.kaggle.mounts import bundle_on_path, competition_dir, staged_file
from tgs.kaggle.stage import KERNEL_LOG, SMP, STAGE_INFO, STAGED_RUN, SUBMISSION
from tgs.run.folder import Run
from tgs.run.records import Manifest, StageInfo


# -- in the kernel ---------------------------------------------------------------------------
def find_competition_data(input_root: Path, scratch: Path) -> Path:
    """The competition's data under input_root; test.zip is unpacked into `scratch`."""
    comp = competition_dir(input_root)
    if (comp / "test" / "images").is_dir():
        return comp
    if not (comp / "test.zip").is_file():
        raise TGSError(f"{comp} has neither test/images nor test.zip")
    with zipfile.ZipFile(comp / "test.zip") as zf:
        zf.extractall(scratch / "test")
    for name in ("sample_submission.csv", "depths.csv"):
        if (comp / name).is_file():
            shutil.copy2(comp / name, scratch / name)
    return scratch


def _origin(module: str) -> str:
    mod = sys.modules.get(module)
    version = getattr(mod, "__version__", "?")
    return f"{module} {version} from {Path(mod.__file__).parent}" if mod else f"{module}: unused"


MANIFEST_LINE = "manifest: "  # tgs-kernel.log's line with the kernel's manifest (less config)


def read_kernel_manifest(kernel_log: Path) -> Manifest | None:
    """The manifest a kernel's predict wrote, from its tgs-kernel.log (None when absent)."""
    if not kernel_log.is_file():
        return None
    for line in kernel_log.read_text().splitlines():
        if line.startswith(MANIFEST_LINE):
            try:
                return Manifest.from_dict(json.loads(line[len(MANIFEST_LINE) :]))
            except (ValueError, TGSError) as e:
                raise TGSError(f"{kernel_log}: its manifest line is broken ({e})") from None
    return None


def main(staged: Path, input_root: Path, working: Path, scratch: Path) -> None:
    """The kernel script's work (tgs/resources/kernels/tgs_inference.py): check the image's
    packages (offline: a wrong one stops the kernel at once), find the staged run and smp in the
    dataset (folders or zips), predict, print what it wrote."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = StageInfo.read(staged / STAGE_INFO)
    ensure_packages(inference_needs(info.smp is not None), internet=False)
    run_dir = staged_file(staged, STAGED_RUN, scratch)
    if run_dir is None:
        raise TGSError(f"{staged} holds neither {STAGED_RUN}/ nor {STAGED_RUN}.zip")
    if info.smp is not None and bundle_on_path(staged, SMP, scratch) is None:
        raise TGSError(f"{staged} holds neither {SMP}/ nor {SMP}.zip, and the run needs it")
    path = run_inference(run_dir, input_root, working, info)
    print(f"wrote {path}")
    print((path.parent / KERNEL_LOG).read_text())


def run_inference(
    run_dir: Path, input_root: Path, working: Path, info: StageInfo | None = None
) -> Path:
    """In the kernel: predict the test set with the staged run. Writes only submission.csv and
    tgs-kernel.log to `working` (test images are unpacked to a temporary folder)."""
    from tgs.predict.test_set import predict_run  # torch: only inside the kernel

    run = Run(run_dir).require()
    info = info or StageInfo(run=run.name, models=[])
    working.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tgs-kernel-") as tmp:
        scratch = Path(tmp)
        data = find_competition_data(input_root, scratch)
        # the staged run is read-only input: nobody writes it, so no writer lock
        path = predict_run(run, data, out=scratch / "out" / SUBMISSION, lock=False)
        manifest = Manifest.read(Manifest.path_for(path))
        shutil.copyfile(path, working / SUBMISSION)
    made = {k: v for k, v in manifest.to_dict().items() if k != "config"}
    lines = [
        f"tgs kernel: run {info.run} staged at commit {info.commit}, stage {info.stage_id}",
        *(_origin(m) for m in ("tgs", SMP, "torch")),
        f"data: {data if data != scratch else 'test.zip unpacked to a temporary folder'}",
        f"wrote {SUBMISSION}: {manifest.n_images} images, {len(manifest.models)} models, "
        f"tta {manifest.tta}, {manifest.seconds}s",
        f"{MANIFEST_LINE}{json.dumps(made)}",
    ]
    (working / KERNEL_LOG).write_text("\n".join(lines) + "\n")
    return working / SUBMISSION
