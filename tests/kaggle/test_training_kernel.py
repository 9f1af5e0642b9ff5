"""The training kernel's parts: the session budget, its metadata, smp bundled when the run needs
it, and the competition's files prepared from a read-only input. The kernel itself, run the way
Kaggle runs it and brought back, is tested in test_kaggle_train.py."""

import json
import zipfile
from pathlib import Path

import pytest

from tests.kaggle_helpers import read_only
from tgs import COMPETITION
from tgs.core.config import load_config
from tgs.core.errors import DataError, TGSError
from tgs.data.prepare import prepare_folder
from tgs.kaggle.stage import TRAIN_SCRIPT, stage_training_dataset, stage_training_kernel
from tgs.kaggle.training_kernel import check_budget


def test_a_budget_the_session_cannot_hold_is_refused():
    check_budget(load_config(None, ["budget_minutes=700"]), 720.0)
    with pytest.raises(TGSError, match=r"runs at most 720 min.*budget <= 700\)"):
        check_budget(load_config(None, ["budget_minutes=701"]), 720.0)


def test_kernel_metadata_turns_gpu_and_internet_on(tmp_path):
    k = stage_training_kernel(
        tmp_path / "k", "al/tgs-train", "tgs train", "al/ds", resume_from="al/old"
    )
    meta = json.loads((k / "kernel-metadata.json").read_text())
    assert meta["code_file"] == TRAIN_SCRIPT and (k / TRAIN_SCRIPT).is_file()
    assert (
        meta["enable_gpu"] and meta["enable_internet"] and meta["machine_shape"] == "NvidiaTeslaT4"
    )
    assert meta["competition_sources"] == [COMPETITION] and meta["dataset_sources"] == ["al/ds"]
    assert meta["kernel_sources"] == ["al/old"]


def test_prepare_folder_reads_zips_or_folders_and_writes_nothing_there(
    tmp_path, competition_zip, synth_dir
):
    src = tmp_path / "src"
    with zipfile.ZipFile(competition_zip) as zf:
        zf.extractall(src)
    read_only(src)
    a = prepare_folder(src, tmp_path / "a")
    b = prepare_folder(synth_dir, tmp_path / "b")  # train/ and test/ already unpacked
    for sub in ("train/images", "train/masks", "test/images"):
        assert sorted(p.name for p in (a / sub).iterdir()) == sorted(
            p.name for p in (b / sub).iterdir()
        )
    with pytest.raises(DataError, match="lacks train.csv"):
        prepare_folder(tmp_path / "a" / "train", tmp_path / "c")


def test_smp_is_bundled_when_the_model_or_a_loss_term_needs_it(tmp_path):
    from tgs.models.registry import smp_needed_by

    assert smp_needed_by(load_config(None, ["model=seed_unet", "loss=bce+lovasz"]), True) is None
    cfg = load_config(None, ["model=seed_unet", "loss=0.5*bce+dice"])
    assert smp_needed_by(cfg, training=True) == "loss '0.5*bce+dice' (dice)"
    assert smp_needed_by(cfg) is None  # predicting needs no loss
    stage2 = ["model=seed_unet", "loss=bce", "stage2_epochs=2", "stage2_loss=lovasz_batch"]
    assert smp_needed_by(load_config(None, stage2), True) == "loss 'lovasz_batch' (lovasz_batch)"
    assert smp_needed_by(load_config(None, ["model=unet"])) == "model 'unet'"
    ds = stage_training_dataset("name: x\n", "x", "loss 'dice'", tmp_path / "d", "a/b", "title")
    assert (ds / "segmentation_models_pytorch" / "__init__.py").is_file()
    assert json.loads((ds / "tgs-stage.json").read_text())["kind"] == "train"


def test_the_kernel_trains_a_fold_per_gpu_and_resumes_only_what_is_attached(
    tmp_path, competition_zip
):
    from tgs.kaggle.training_kernel import run_command, run_training

    one = run_command(Path("c.yaml"), Path("d"), Path("run"), False, gpus=1)
    assert "--gpus" not in one and "--resume" not in one
    two = run_command(Path("c.yaml"), Path("d"), Path("run"), True, gpus=2)
    assert two[-3:] == ["--resume", "--gpus", "0,1"]  # Kaggle's T4 x2: a fold on each
    check_budget(load_config(None, ["budget_minutes=0"]), 5.0)  # fixed epochs: any session
    inputs = tmp_path / "input"
    with zipfile.ZipFile(competition_zip) as zf:
        zf.extractall(inputs / COMPETITION)
    staged = stage_training_dataset(
        "name: x\n", "x", None, inputs / "ds", "a/b", "title", resume_from="al/tgs-train-x"
    )
    with pytest.raises(TGSError, match="continues al/tgs-train-x's run, but no run/config.yaml"):
        run_training(staged, inputs, tmp_path / "working")
