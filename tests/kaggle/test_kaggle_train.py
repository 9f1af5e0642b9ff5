"""`tgs kaggle train` through the installed kaggle client (HTTP canned by tests/bin/real_kaggle.py):
the push (quota, accelerator, metadata the client validates), the staged training kernel run
locally as Kaggle runs it (read-only input, network cut, CPU), and its output brought back by
kernel-output as a local run that predicts, reports and submits like one trained here."""

import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.helpers import tiny_yaml
from tests.kaggle_helpers import run_kernel_offline
from tgs.cli.main import main
from tgs.kaggle.stage import TRAIN_SCRIPT

COMP = "tgs-salt-identification-challenge"
CONFIG = tiny_yaml(name="ktiny", threads=1, max_train_batches=2, epochs=3)
# long enough (~50 s here) that a session stopped after ~15 s (5.25 min limit - 5 min to save)
# is always stopped mid-run
LONG = tiny_yaml(
    name="klong", threads=1, epochs=12, size=64, model_kwargs={"n_filters": 16}, max_train_batches=2
)


def _config(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _run_on_kaggle(tmp_path, competition_zip, name, session, earlier=None, minutes=None) -> Path:
    """Run the kernel `tgs kaggle train` staged for `name` as Kaggle would, and publish its
    working folder as the kernel's output (what `kaggle kernels output` then downloads)."""
    staged = tmp_path / "build/kaggle" / name / "train/dataset"
    env = {"TGS_KAGGLE_SESSION_MINUTES": str(minutes)} if minutes else {}
    working, found, log = run_kernel_offline(
        staged, competition_zip, tmp_path / session, TRAIN_SCRIPT, earlier, env
    )
    assert found["network"] == ""  # nothing tried to connect
    assert "== fold 0" in log  # tgs run's progress is in the kernel log
    output = tmp_path / "output"
    shutil.rmtree(output)
    shutil.copytree(working, output)
    return working


def _local_submission(tmp_path, synth_dir, config: Path, monkeypatch) -> bytes:
    """A local `tgs run` of the same config and seed: its submission's bytes."""
    assert main(["run", "--config", str(config), "--data", str(synth_dir), "--run", "local"]) == 0
    (sub,) = (tmp_path / "submissions").glob("local-cv*.csv")
    data = sub.read_bytes()
    sub.unlink()
    sub.with_suffix(".json").unlink()
    return data


def test_dry_run_stages_and_calls_nothing(real, tmp_path, capsys):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    args = ["kaggle", "train", "--config", str(cfg), "--run", "ktiny", "--dry-run"]
    assert main([*args, "--accelerator", "NvidiaTeslaP100", "lr=0.002"]) == 0
    out = capsys.readouterr().out
    kernel = tmp_path / "build/kaggle/ktiny/train/kernel"
    assert (
        "kaggle kernels push -p build/kaggle/ktiny/train/kernel --accelerator NvidiaTeslaP100"
        in out
    )
    assert "kaggle datasets create -p build/kaggle/ktiny/train/dataset --dir-mode zip" in out
    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/tgs-train-ktiny" and meta["machine_shape"] == "NvidiaTeslaP100"
    staged = (tmp_path / "build/kaggle/ktiny/train/dataset/train-config.yaml").read_text()
    assert "lr: 0.002" in staged and "name: ktiny" in staged
    assert real.methods() == []


def test_a_budget_or_a_name_the_session_cannot_take_is_refused_before_staging(
    real, tmp_path, capsys
):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "budget_minutes=701", "--dry-run"]) == 1
    assert "runs at most 720 min, and 20 go to setting up and saving" in capsys.readouterr().err
    assert main(["kaggle", "train", "--config", str(cfg), "loss=dice_typo", "--dry-run"]) == 1
    assert "dice_typo" in capsys.readouterr().err
    bad = ["kaggle", "train", "--config", str(cfg), "--resume-from", "nobody", "--dry-run"]
    assert main(bad) == 1
    assert "--resume-from 'nobody': expected OWNER/KERNEL-SLUG" in capsys.readouterr().err
    assert not (tmp_path / "build").exists() and real.methods() == []


@pytest.mark.parametrize(
    "mode, said",
    [
        ("no-quota", "no Kaggle GPU quota left this week: used 30.00h of 30.00h, 0.00h left"),
        (
            "accelerator-refused",
            "Kernel push error: Accelerator NvidiaTeslaT4 is not available; the kernel asked for "
            "NvidiaTeslaT4: choose another with --accelerator",
        ),
    ],
)
def test_no_quota_or_a_refused_accelerator_is_named(
    real, tmp_path, monkeypatch, capsys, mode, said
):
    monkeypatch.setenv("REAL_KAGGLE_MODE", mode)
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg)]) == 1
    assert said in capsys.readouterr().err
    if mode == "no-quota":  # refused before anything is uploaded
        assert real.methods() == ["GetAcceleratorQuotaStatistics"]


@pytest.mark.slow  # trains or spawns processes
def test_train_on_kaggle_and_bring_the_run_back(
    real, tmp_path, synth_dir, competition_zip, monkeypatch, capsys
):
    """Push through the client, run the kernel as Kaggle would, follow it, bring the run back:
    it predicts the bytes of a local `tgs run`, and reports, stages and submits as a local run."""
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "GPU quota: used 4.50h of 30.00h, 25.50h left (refreshes 2026-12-05" in out
    assert (
        "training kernel alice/tgs-train-ktiny pushed: https://www.kaggle.com/code/alice/tgs-train-ktiny"
        in out
    )
    assert "Upload successful: tgs.zip" in out
    state = real.state()
    assert state["uploads"]["alice/tgs-ktiny-train"] == [  # the loss, bce+dice, needs smp
        "segmentation_models_pytorch.zip",
        "tgs-stage.json",
        "tgs.zip",
        "train-config.yaml",
    ]
    meta = state["kernels"]["alice/tgs-train-ktiny"]["meta"]
    assert meta["enableGpu"] is True and meta["enableInternet"] is True
    assert meta["machineShape"] == "NvidiaTeslaT4" and meta["newTitle"] == "tgs train ktiny"
    assert meta["competitionDataSources"] == [COMP]
    assert meta["datasetDataSources"] == ["alice/tgs-ktiny-train"]
    assert not meta.get("kernelDataSources")

    _run_on_kaggle(tmp_path, competition_zip, "ktiny", "session1")
    assert main(["kaggle", "kernel-status", "runs/ktiny", "--wait", "--poll", "0"]) == 0
    assert "kernel alice/tgs-train-ktiny: complete" in capsys.readouterr().out
    assert main(["kaggle", "kernel-output", "runs/ktiny", "--data", str(synth_dir)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "run runs/ktiny trained by kernel alice/tgs-train-ktiny on CPU in" in out
    (sub,) = (tmp_path / "submissions").glob("ktiny-kaggle-cv*.csv")
    manifest = json.loads(sub.with_suffix(".json").read_text())
    assert manifest["made"] == "kaggle-train" and manifest["run"] == "runs/ktiny"
    assert manifest["kernel"] == "alice/tgs-train-ktiny" and manifest["data"] == str(synth_dir)
    run_meta = json.loads((tmp_path / "runs/ktiny/meta.json").read_text())
    assert run_meta["trained_on"]["kernel"] == "alice/tgs-train-ktiny"
    assert run_meta["trained_on"]["gpu"] is None and run_meta["data"] == str(synth_dir.resolve())

    local = _local_submission(tmp_path, synth_dir, cfg, monkeypatch)
    assert sub.read_bytes() == local
    assert main(["predict", "--run", "runs/ktiny"]) == 0  # the run predicts here as trained
    (again,) = (tmp_path / "submissions").glob("ktiny-cv*.csv")
    assert again.read_bytes() == local
    assert main(["report", "--run", "runs/ktiny"]) == 0
    assert main(["blend", "runs/ktiny", "local", "--out", "blends/b", "--no-predict"]) == 0
    assert main(["pseudo", "--run", "runs/ktiny", "--out", "pseudo", "--max-uncertain", "1"]) == 0
    assert main(["kaggle", "push-kernel", "runs/ktiny", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["kaggle", "submit", str(sub), "-m", "trained on kaggle", "--wait"]) == 0
    assert main(["kaggle", "submissions"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:3] == [sub.name, "runs/ktiny", "ktiny"] and row[6] == "kaggle-train"
    # a run folder trained here is never replaced by a kernel's
    refuse = ["kaggle", "kernel-output", "local", "--kernel", "alice/tgs-train-ktiny"]
    assert main([*refuse, "--data", str(synth_dir)]) == 1
    assert "local exists and is not a run brought back from Kaggle" in capsys.readouterr().err
    assert not list(tmp_path.glob("local.fetching"))


@pytest.mark.slow  # trains or spawns processes
def test_a_run_longer_than_a_session_continues_in_a_second_kernel(
    real, tmp_path, synth_dir, competition_zip, monkeypatch, capsys
):
    """Session 1 stops at the session limit; kernel-output refuses its unfinished run and prints
    the command that continues it; that command's kernel finishes the run to the bytes of an
    uninterrupted local run."""
    cfg = _config(tmp_path, LONG, "klong")
    assert main(["kaggle", "train", "--config", str(cfg)]) == 0
    first = _run_on_kaggle(tmp_path, competition_zip, "klong", "session1", minutes=5.25)
    assert json.loads((first / "tgs-train.json").read_text())["stopped_at_session_limit"]
    assert main(["kaggle", "kernel-status", "runs/klong", "--wait", "--poll", "0"]) == 0
    capsys.readouterr()
    assert main(["kaggle", "kernel-output", "runs/klong", "--data", str(synth_dir)]) == 1
    err = capsys.readouterr().err
    print(err)
    assert "kernel alice/tgs-train-klong did not finish its run (it stopped at the session " in err
    assert "thresholds.json, submission.csv; continue it in a new session: " in err
    assert not (tmp_path / "runs/klong").exists()
    again = shlex.split(err.split("continue it in a new session: python -m tgs ")[1].strip())
    assert again[-2:] == ["--resume-from", "alice/tgs-train-klong"]
    assert main(again) == 0
    assert "kernel alice/tgs-train-klong-part-2 pushed" in capsys.readouterr().out
    meta = real.state()["kernels"]["alice/tgs-train-klong-part-2"]["meta"]
    assert meta["kernelDataSources"] == ["alice/tgs-train-klong"]
    assert meta["newTitle"] == "tgs train klong part 2"

    _run_on_kaggle(tmp_path, competition_zip, "klong", "session2", earlier=first)
    assert main(["kaggle", "kernel-status", "runs/klong", "--wait", "--poll", "0"]) == 0
    assert "alice/tgs-train-klong-part-2: complete" in capsys.readouterr().out
    assert main(["kaggle", "kernel-output", "runs/klong", "--data", str(synth_dir)]) == 0
    assert "(resumed)" in capsys.readouterr().out
    (sub,) = (tmp_path / "submissions").glob("klong-kaggle-cv*.csv")
    assert sub.read_bytes() == _local_submission(tmp_path, synth_dir, cfg, monkeypatch)


def test_resume_from_a_kernel_that_has_not_finished_is_refused(real, tmp_path, capsys):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny"]) == 0
    again = ["kaggle", "train", "--config", str(cfg), "--resume-from", "alice/tgs-train-ktiny"]
    assert main(again) == 1  # the canned kernel is running on its first status poll
    err = capsys.readouterr().err
    assert "--resume-from alice/tgs-train-ktiny is running: its output is attached only once" in err
    assert "tgs-train-ktiny-part-2" not in real.state()["kernels"]


def test_a_failed_kernel_shows_the_end_of_its_log(real, tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny"]) == 0
    monkeypatch.setenv("REAL_KAGGLE_MODE", "kernel-fails")
    assert main(["kaggle", "kernel-status", "runs/ktiny", "--wait", "--poll", "0"]) == 1
    err = capsys.readouterr().err
    assert "kernel alice/tgs-train-ktiny failed: ModuleNotFoundError: no smp; its log ends:" in err
    assert "  | torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in err
    assert "the whole log: build/kaggle/log/tgs-train-ktiny.log" in err
