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
from tgs.kaggle.session import END_MARK_ENV, SessionClock, process_start
from tgs.kaggle.stage import TRAIN_SCRIPT, stage_training_dataset, stage_training_kernel
from tgs.kaggle.training_kernel import check_budget


def test_a_budget_the_session_cannot_hold_is_refused():
    check_budget(load_config(None, ["budget_minutes=700"]), 720.0)
    with pytest.raises(TGSError, match=r"runs at most 720 min.*budget <= 700\)"):
        check_budget(load_config(None, ["budget_minutes=701"]), 720.0)


def test_kernel_metadata_turns_gpu_and_internet_on(tmp_path):
    k = stage_training_kernel(
        tmp_path / "k", "al/tgs-train", "tgs train", "al/ds", resume_from="al/old", stage_id="s1"
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
    ds = stage_training_dataset(
        "name: x\n", "x", "loss 'dice'", tmp_path / "d", ref="a/b", title="title", stage_id="s1"
    )
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
        "name: x\n",
        "x",
        None,
        inputs / "ds",
        ref="a/b",
        title="title",
        resume_from="al/tgs-train-x",
        stage_id="s1",
    )
    with pytest.raises(TGSError, match="continues al/tgs-train-x's run, but no run/config.yaml"):
        run_training(staged, inputs, tmp_path / "working", tmp_path / "scratch")
    assert not (tmp_path / "scratch").exists()  # stopped before preparing the data


def _proc(tmp_path: Path, btime: int, pid1_ticks: int) -> Path:
    """A /proc with the boot time and PID 1's start (clock ticks after boot)."""
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "stat").write_text(f"cpu  1 2 3\nbtime {btime}\nprocesses 9\n")
    fields = ["S", *["0"] * 18, str(pid1_ticks), "0"]  # field 22 is the 20th after the name
    (proc / "1" / "stat").write_text(f"1 (tini (init)) {' '.join(fields)}\n")
    return proc


def test_the_session_clock_counts_from_the_session_s_start(tmp_path):
    """On Kaggle from the container's first process (the set-up time measured); without /proc
    from the script's start less the set-up allowance; off Kaggle from the script's start. The
    stop time is 5 minutes before 12 hours from there."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    proc = _proc(tmp_path, btime=1_000_000, pid1_ticks=100 * ticks)
    assert process_start(1, proc) == 1_000_100.0
    on_kaggle = {"KAGGLE_KERNEL_RUN_TYPE": "Batch"}
    clock = SessionClock.detect(now=1_000_400.0, env=on_kaggle, proc=proc)
    assert (clock.start, clock.setup_seconds) == (1_000_100.0, 300.0)
    assert clock.source == "the container's start (PID 1)"
    stop = clock.stop_time()
    assert stop == 1_000_100.0 + 60 * (720 - 5)
    assert not clock.over(stop, now=stop - 1) and clock.over(stop, now=stop)
    guess = SessionClock.detect(now=1_000_400.0, env=on_kaggle, proc=tmp_path / "none")
    assert guess.start == 1_000_400.0 - 5 * 60 and guess.setup_seconds is None
    assert guess.source == "the kernel's start less 5 min set-up (/proc cannot tell)"
    local = SessionClock.detect(now=5.0, env={}, proc=proc)
    assert (local.start, local.source) == (5.0, "the kernel's start (not on Kaggle)")


def test_a_test_ends_the_session_with_a_mark_not_a_time(tmp_path):
    mark = tmp_path / "end"
    clock = SessionClock.detect(now=0.0, env={END_MARK_ENV: str(mark)})
    assert not clock.over(clock.stop_time(), now=1.0)
    mark.touch()
    assert clock.over(clock.stop_time(), now=1.0)
