"""The training kernel, run locally the way Kaggle runs it: the competition's files read-only
under input/, the staged dataset beside them, CPU; its output predicts what a local `tgs run`
of the same config and seed writes, also when a first session is stopped at the session limit
and a second, given the first's output, continues it."""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import tiny_yaml
from tgs import COMPETITION
from tgs.cli.main import main
from tgs.core.config import load_config
from tgs.core.errors import DataError, TGSError
from tgs.data.prepare import prepare_folder
from tgs.kaggle.stage import TRAIN_SCRIPT, stage_training_dataset, stage_training_kernel
from tgs.kaggle.training_kernel import check_budget

CONFIG = tiny_yaml(name="ktiny", threads=1, max_train_batches=2, epochs=3)
# long enough (~50 s here) that a session stopped after ~15 s is always stopped mid-run
LONG = tiny_yaml(
    name="klong", threads=1, epochs=12, size=64, model_kwargs={"n_filters": 16}, max_train_batches=2
)


def _read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _inputs(
    tmp_path: Path, competition_zip: Path, earlier: Path | None = None, config: str = CONFIG
) -> Path:
    inputs = tmp_path / "input"
    with zipfile.ZipFile(competition_zip) as zf:  # as Kaggle mounts it: the inner zips + CSVs
        zf.extractall(inputs / COMPETITION)
    ds = stage_training_dataset(config, "ktiny", "seed_unet", inputs / "tgs-train", "a/b", "t")
    assert (ds / "tgs" / "__init__.py").is_file() and not (
        ds / "segmentation_models_pytorch"
    ).exists()
    if earlier is not None:
        shutil.copytree(earlier, inputs / "earlier-kernel")
    _read_only(inputs)
    return inputs


def _run_kernel(tmp_path: Path, inputs: Path, session_minutes: float | None = None) -> Path:
    kernel = stage_training_kernel(tmp_path / "kernel", "a/kern", "t", "a/b", resume_from=None)
    working = tmp_path / "working"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(TGS_KAGGLE_INPUT=str(inputs), TGS_KAGGLE_WORKING=str(working), HOME=str(tmp_path))
    if session_minutes is not None:
        env["TGS_KAGGLE_SESSION_MINUTES"] = str(session_minutes)
    proc = subprocess.run(
        [sys.executable, str(kernel / TRAIN_SCRIPT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return working


def _local_run(tmp_path: Path, synth_dir: Path, monkeypatch, config: str = CONFIG) -> bytes:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "ktiny.yaml"
    cfg.write_text(config)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", str(cfg), "--data", str(synth_dir), "--run", "local"]) == 0
    (sub,) = (tmp_path / "submissions").glob("*.csv")
    return sub.read_bytes()


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
    _read_only(src)
    a = prepare_folder(src, tmp_path / "a")
    b = prepare_folder(synth_dir, tmp_path / "b")  # train/ and test/ already unpacked
    for sub in ("train/images", "train/masks", "test/images"):
        assert sorted(p.name for p in (a / sub).iterdir()) == sorted(
            p.name for p in (b / sub).iterdir()
        )
    with pytest.raises(DataError, match="lacks train.csv"):
        prepare_folder(tmp_path / "a" / "train", tmp_path / "c")


@pytest.mark.slow  # trains or spawns processes
def test_kernel_output_predicts_what_a_local_run_writes(
    tmp_path, synth_dir, competition_zip, monkeypatch
):
    working = _run_kernel(tmp_path / "k", _inputs(tmp_path / "k", competition_zip))
    status = json.loads((working / "tgs-train.json").read_text())
    assert status["finished"] and not status["resumed"] and status["gpu"] is None
    assert (working / "run" / "thresholds.json").is_file() and (working / "run" / "report").is_dir()
    local = _local_run(tmp_path / "l", synth_dir, monkeypatch)
    assert (working / "submission.csv").read_bytes() == local


@pytest.mark.slow  # trains or spawns processes
def test_a_second_session_finishes_what_the_session_limit_stopped(
    tmp_path, synth_dir, competition_zip, monkeypatch
):
    inputs = _inputs(tmp_path / "s1", competition_zip, config=LONG)
    first = _run_kernel(tmp_path / "s1", inputs, 20.25)
    status = json.loads((first / "tgs-train.json").read_text())
    assert status["stopped_at_session_limit"] and not status["finished"]
    assert not (first / "submission.csv").exists()
    inputs = _inputs(tmp_path / "s2", competition_zip, earlier=first, config=LONG)
    second = _run_kernel(tmp_path / "s2", inputs)
    status = json.loads((second / "tgs-train.json").read_text())
    assert status["finished"] and status["resumed"]
    local = _local_run(tmp_path / "l", synth_dir, monkeypatch, LONG)
    assert (second / "submission.csv").read_bytes() == local
