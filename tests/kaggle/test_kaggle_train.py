"""`tgs kaggle train` through the installed kaggle client (HTTP canned by tests/bin/real_kaggle.py):
the first-use checks and the push (rules, quota, accelerator, metadata the client validates,
the new dataset version waited for), the staged training kernel run locally as Kaggle runs it
(read-only input in each mount layout, the files the client uploaded, network cut, CPU), and
its output brought back by kernel-output through the paged listing as a local run that
predicts, reports and submits like one trained here."""

import json
import shlex
import shutil
from pathlib import Path

import pytest

from tests.helpers import tiny_yaml
from tests.kaggle_helpers import LITE_SETTINGS, kernel_process, run_kernel_offline, snapshot_run
from tgs.cli.main import main
from tgs.core.faults import ENV as FAULT_ENV
from tgs.core.faults import MARK_ENV
from tgs.kaggle.session import END_MARK_ENV
from tgs.kaggle.stage import PACKAGES, TRAIN_SCRIPT
from tgs.models import weights
from tgs.run.folder import Run
from tgs.run.records import TrainStatus

COMP = "tgs-salt-identification-challenge"
CONFIG = tiny_yaml(name="ktiny", threads=1, max_train_batches=2, epochs=3)
# 5 folds of 2 cycle snapshots each: ~45 output files, 3 pages of Kaggle's listing
FIVE = tiny_yaml(
    name="kfive",
    threads=1,
    max_train_batches=2,
    epochs=2,
    n_folds=5,
    scheduler="cosine_restarts",
    cycle_epochs=1,
    snapshots=True,
)
PHONE = "Kaggle gives a kernel a GPU or the internet only on a phone-verified account"
RULES = "https://www.kaggle.com/competitions/tgs-salt-identification-challenge/rules"
FAST = ["--poll", "0"]  # the canned Kaggle shows a new dataset version after 3 status calls
LITE = tiny_yaml(name="klite", **LITE_SETTINGS)  # encoder_weights: imagenet, lite0's packaged
LITE0 = weights.PACKAGED["tf_efficientnet_lite0"]
EXTRA = 'pip install "tgs[lite]"'


def _config(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _run_on_kaggle(real, tmp_path, competition_zip, name, session, **kw) -> Path:
    """Run the kernel `tgs kaggle train` staged for `name` as Kaggle would, on the dataset
    version the client uploaded last, and publish its working folder as the kernel's output
    (what `kaggle kernels output` then lists and downloads)."""
    staged = tmp_path / "build/kaggle" / name / "train/dataset"
    files = real.uploaded(f"alice/tgs-{name}-train")
    working, found, log = run_kernel_offline(
        staged, competition_zip, tmp_path / session, TRAIN_SCRIPT, files=files, **kw
    )
    assert found["network"] == ""  # nothing tried to connect
    assert "== fold 0" in log  # tgs run's progress is in the kernel log
    output = tmp_path / "output"
    shutil.rmtree(output)
    shutil.copytree(working, output)
    return working


def _local_submission(tmp_path, synth_dir, config: Path) -> bytes:
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
    assert "kaggle datasets status alice/tgs-ktiny-train --format json" in out
    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert meta["id"] == "alice/tgs-train-ktiny" and meta["machine_shape"] == "NvidiaTeslaP100"
    staged = tmp_path / "build/kaggle/ktiny/train/dataset"
    assert "lr: 0.002" in (staged / "train-config.yaml").read_text()
    stage_id = json.loads((staged / "tgs-stage.json").read_text())["stage_id"]
    assert f'STAGE_ID = "{stage_id}"' in (kernel / TRAIN_SCRIPT).read_text()
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
    "mode, said, asked",
    [
        ("no-credentials", "no Kaggle credentials found. Run `kaggle auth login`", []),
        (
            "rules-not-accepted",
            "the competition's rules are not accepted on this Kaggle account (403 from `kaggle "
            "competitions download`: You must accept this competition's rules before you'll be "
            f"able to download files.): accept them at {RULES} (signed in",
            ["DownloadDataFile"],
        ),
        (
            "no-quota",
            "no Kaggle GPU quota left this week: used 30.00h of 30.00h, 0.00h left",
            ["DownloadDataFile", "GetAcceleratorQuotaStatistics"],
        ),
    ],
)
def test_first_use_is_checked_before_anything_is_uploaded(
    real, tmp_path, monkeypatch, capsys, mode, said, asked
):
    """Credentials, the competition's rules (a download Kaggle refuses without them; the rules
    page named) and the GPU quota, in that order, before any upload."""
    if mode == "no-credentials":
        monkeypatch.delenv("KAGGLE_KEY")
    else:
        monkeypatch.setenv("REAL_KAGGLE_MODE", mode)
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), *FAST]) == 1
    assert said in capsys.readouterr().err
    assert real.methods() == asked
    assert not (tmp_path / "build/kaggle/ktiny/train/dataset").exists()


@pytest.mark.parametrize(
    "mode, said",
    [
        (
            "kernel-refused",  # a bare 400, as Kaggle refuses an accelerator
            "Kaggle refused the kernel: `kaggle kernels push` failed (exit 1): 400 Client Error: "
            "Bad Request for url: https://api.kaggle.com/v1/kernels.KernelsApiService/SaveKernel"
            "; the kernel asked for NvidiaTeslaT4: choose another with --accelerator, and see "
            "your weekly GPU hours with `kaggle quota`; the kernel asked for a GPU and the "
            f"internet: {PHONE}",
        ),
        (
            "kernel-error",  # an error field in an HTTP 200
            "Kaggle refused the kernel: `kaggle kernels push` failed: Kernel push error: Kernel "
            "title is too long; the kernel asked for NvidiaTeslaT4",
        ),
        (
            "invalid-competition-source",
            "The following are not valid competition sources and could not be added to the "
            f"kernel: ['{COMP}']: Kaggle did not attach the competition {COMP}: its rules are "
            f"not accepted on this account. Accept them at {RULES} and push again (the kernel "
            "Kaggle created anyway stops at once: it finds no competition data)",
        ),
        (
            "bad-sources",
            "The following are not valid dataset sources and could not be added to the kernel: "
            "['alice/tgs-ktiny-train']: Kaggle did not attach the staged dataset "
            "alice/tgs-ktiny-train (not yours, or not ready",
        ),
    ],
)
def test_each_way_kaggle_refuses_the_kernel_is_named(
    real, tmp_path, monkeypatch, capsys, mode, said
):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    monkeypatch.setenv("REAL_KAGGLE_MODE", mode)
    assert main(["kaggle", "train", "--config", str(cfg), *FAST]) == 1
    err = capsys.readouterr().err
    print(err)
    assert said in err
    assert real.methods()[-1] == "SaveKernel"


@pytest.mark.slow  # trains or spawns processes
def test_train_on_kaggle_and_bring_the_run_back(
    real, tmp_path, synth_dir, competition_zip, monkeypatch, capsys
):
    """Push through the client, run the kernel as Kaggle would (datasets/<owner>/<slug> and
    competitions/<slug>, the dataset's folders as the zips the client uploaded), follow it,
    bring the 5-fold run back through 3 pages of Kaggle's listing: it predicts the bytes of a
    local `tgs run`, and reports, stages and submits as a local run. With only the first page
    (what a client older than 2.2.2 fetches) kernel-output names the files it lacks."""
    cfg = _config(tmp_path, FIVE, "kfive")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "kfive", *FAST]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "GPU quota: used 4.50h of 30.00h, 25.50h left (refreshes 2026-12-05" in out
    assert (
        "dataset alice/tgs-kfive-train (version 1) is ready; training kernel "
        "alice/tgs-train-kfive pushed: https://www.kaggle.com/code/alice/tgs-train-kfive" in out
    )
    assert "Upload successful: tgs.zip" in out
    state = real.state()
    assert sorted(real.uploaded("alice/tgs-kfive-train")) == [  # bce+dice needs smp
        "segmentation_models_pytorch.zip",
        "tgs-stage.json",
        "tgs.zip",
        "train-config.yaml",
    ]
    kernel = state["kernels"]["alice/tgs-train-kfive"]
    assert kernel["attached"] == {"alice/tgs-kfive-train": 1}  # pushed once version 1 showed
    meta = kernel["meta"]
    assert meta["enableGpu"] is True and meta["enableInternet"] is True
    assert meta["machineShape"] == "NvidiaTeslaT4" and meta["newTitle"] == "tgs train kfive"
    assert meta["competitionDataSources"] == [COMP]
    assert meta["datasetDataSources"] == ["alice/tgs-kfive-train"]
    assert not meta.get("kernelDataSources")

    _run_on_kaggle(
        real, tmp_path, competition_zip, "kfive", "session1", layout="nested", form="zip"
    )
    output = [p for p in (tmp_path / "output").rglob("*") if p.is_file()]
    assert len(output) > 40  # more than 2 pages of 20
    assert main(["kaggle", "kernel-status", "runs/kfive", "--wait", "--poll", "0"]) == 0
    out = capsys.readouterr().out
    assert "kernel alice/tgs-train-kfive: queued (followed 0h00m of at most 13h00m)" in out
    assert "kernel alice/tgs-train-kfive: running (followed" in out
    assert "kernel alice/tgs-train-kfive: complete" in out
    monkeypatch.setenv("REAL_KAGGLE_MODE", "first-page-only")
    assert main(["kaggle", "kernel-output", "runs/kfive", "--data", str(synth_dir)]) == 1
    err = capsys.readouterr().err
    assert "kernel alice/tgs-train-kfive's output, in build/kaggle/kfive/output, has no " in err
    assert "clients older than 2.2.2 download only the first page" in err
    assert not (tmp_path / "runs/kfive").exists()
    monkeypatch.delenv("REAL_KAGGLE_MODE")
    pages = real.state()["output_pages"]
    assert main(["kaggle", "kernel-output", "runs/kfive", "--data", str(synth_dir)]) == 0
    assert real.state()["output_pages"] - pages >= 3
    out = capsys.readouterr().out
    print(out)
    assert "run runs/kfive trained by kernel alice/tgs-train-kfive on CPU in" in out
    (sub,) = (tmp_path / "submissions").glob("kfive-kaggle-cv*.csv")
    manifest = json.loads(sub.with_suffix(".json").read_text())
    assert manifest["made"] == "kaggle-train" and manifest["run"] == "runs/kfive"
    assert manifest["kernel"] == "alice/tgs-train-kfive" and manifest["data"] == str(synth_dir)
    run = Run(tmp_path / "runs/kfive")
    assert run.finished_folds() == [0, 1, 2, 3, 4] and len(run.thresholds().models) == 10
    run_meta = run.metadata()
    assert run_meta.trained_on.kernel == "alice/tgs-train-kfive"
    assert run_meta.trained_on.gpu is None and run_meta.data == str(synth_dir.resolve())

    local = _local_submission(tmp_path, synth_dir, cfg)
    assert sub.read_bytes() == local
    assert main(["predict", "--run", "runs/kfive"]) == 0  # the run predicts here as trained
    (again,) = (tmp_path / "submissions").glob("kfive-cv*.csv")
    assert again.read_bytes() == local
    assert main(["report", "--run", "runs/kfive"]) == 0
    assert main(["blend", "runs/kfive", "local", "--out", "blends/b", "--no-predict"]) == 0
    assert main(["pseudo", "--run", "runs/kfive", "--out", "pseudo", "--max-uncertain", "1"]) == 0
    assert main(["kaggle", "push-kernel", "runs/kfive", "--dry-run"]) == 0
    capsys.readouterr()
    assert main(["kaggle", "submit", str(sub), "-m", "trained on kaggle", "--wait"]) == 0
    assert main(["kaggle", "submissions"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:3] == [sub.name, "runs/kfive", "kfive"] and row[6] == "kaggle-train"
    # a run folder trained here is never replaced by a kernel's
    refuse = ["kaggle", "kernel-output", "local", "--kernel", "alice/tgs-train-kfive"]
    assert main([*refuse, "--data", str(synth_dir)]) == 1
    assert "local exists and is not a run brought back from Kaggle" in capsys.readouterr().err
    assert not list(tmp_path.glob("local.fetching"))


@pytest.mark.slow  # trains or spawns processes
def test_a_run_longer_than_a_session_continues_in_a_second_kernel(
    real, tmp_path, synth_dir, competition_zip, capsys
):
    """Session 1 ends while `tgs run` writes fold 0's second last.pt (its `hang` fault: the
    session's end at a known point, whatever the machine's speed); kernel-output refuses the
    unfinished run and prints the command that continues it; that command's kernel (part 2,
    the earlier output under notebooks/<owner>/<slug>, the new dataset version's zips) finishes
    the run to the bytes of an uninterrupted local run."""
    cfg = _config(tmp_path, tiny_yaml(name="klong", threads=1, max_train_batches=2, epochs=3), "k")
    assert main(["kaggle", "train", "--config", str(cfg), *FAST]) == 0
    end = tmp_path / "session1.end"
    env = {FAULT_ENV: "hang@write:last.pt#2", MARK_ENV: str(end), END_MARK_ENV: str(end)}
    first = _run_on_kaggle(real, tmp_path, competition_zip, "klong", "session1", env=env)
    status = json.loads((first / "tgs-train.json").read_text())
    assert status["stopped_at_session_limit"] and status["exit_code"] == -9
    assert status["session_from"] == "the kernel's start (not on Kaggle)"
    assert main(["kaggle", "kernel-status", "runs/klong", "--wait", "--poll", "0"]) == 0
    capsys.readouterr()
    assert main(["kaggle", "kernel-output", "runs/klong", "--data", str(synth_dir)]) == 1
    err = capsys.readouterr().err
    print(err)
    assert (
        "kernel alice/tgs-train-klong did not finish its run (it stopped at the session limit): "
        "missing fold 0 (started), fold 1 (not started), thresholds.json, submission.csv; "
        "continue it in a new session: " in err
    )
    assert not (tmp_path / "runs/klong").exists()
    again = shlex.split(err.split("continue it in a new session: python -m tgs ")[1].strip())
    assert again[-2:] == ["--resume-from", "alice/tgs-train-klong"]
    assert main([*again, *FAST]) == 0
    out = capsys.readouterr().out
    assert "dataset alice/tgs-klong-train (version 2) is ready; training kernel " in out
    assert "alice/tgs-train-klong-part-2 pushed" in out
    kernel = real.state()["kernels"]["alice/tgs-train-klong-part-2"]
    assert kernel["attached"] == {"alice/tgs-klong-train": 2}  # not version 1's stage
    assert kernel["meta"]["kernelDataSources"] == ["alice/tgs-train-klong"]
    assert kernel["meta"]["newTitle"] == "tgs train klong part 2"

    _run_on_kaggle(
        real,
        tmp_path,
        competition_zip,
        "klong",
        "session2",
        earlier=first,
        earlier_ref="alice/tgs-train-klong",
        layout="nested",
        form="zip",
    )
    assert main(["kaggle", "kernel-status", "runs/klong", "--wait", "--poll", "0"]) == 0
    assert "alice/tgs-train-klong-part-2: complete" in capsys.readouterr().out
    assert main(["kaggle", "kernel-output", "runs/klong", "--data", str(synth_dir)]) == 0
    assert "(resumed)" in capsys.readouterr().out
    (sub,) = (tmp_path / "submissions").glob("klong-kaggle-cv*.csv")
    assert sub.read_bytes() == _local_submission(tmp_path, synth_dir, cfg)


def _kernel_output_of(tmp_path, synth_dir, with_run: bool) -> None:
    """The output a kernel Kaggle stopped in error leaves: its run folder as far as it got
    (here: created, no fold started) and no tgs-train.json; or nothing."""
    from tgs.core.config import load_config

    if with_run:
        cfg = load_config(tmp_path / "ktiny.yaml")
        Run(tmp_path / "output" / "run").create(cfg, data_dir=synth_dir)


def test_a_kernel_stopped_in_error_is_continued_when_its_output_holds_a_run(
    real, tmp_path, synth_dir, monkeypatch, capsys
):
    """Kaggle ends a kernel that reaches its time limit in `error`: kernel-output says what
    its run lacks and how to continue it, and --resume-from accepts it (a warning); without
    a run in its output there is nothing to continue, and it is refused."""
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]) == 0
    _kernel_output_of(tmp_path, synth_dir, with_run=True)
    monkeypatch.setenv("REAL_KAGGLE_MODE", "kernel-timeout")
    assert main(["kaggle", "kernel-status", "runs/ktiny", "--wait", "--poll", "0"]) == 1
    assert "kernel alice/tgs-train-ktiny failed: (canned) the session reached" in (
        capsys.readouterr().err
    )
    assert main(["kaggle", "kernel-output", "runs/ktiny", "--data", str(synth_dir)]) == 1
    err = capsys.readouterr().err
    assert (
        "kernel alice/tgs-train-ktiny did not finish its run (Kaggle ended it in error ((canned) "
        "the session reached its limit)): missing fold 0 (not started), fold 1 (not started), "
        "thresholds.json, submission.csv; continue it in a new session: " in err
    )
    resume = ["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]
    assert main([*resume, "--resume-from", "alice/tgs-train-ktiny"]) == 0
    out = capsys.readouterr().out
    assert "warning: alice/tgs-train-ktiny ended error ((canned) the session reached" in out
    assert "alice/tgs-train-ktiny-part-2 pushed" in out
    shutil.rmtree(tmp_path / "output" / "run")  # a kernel that died before `tgs run` wrote
    assert main([*resume, "--resume-from", "alice/tgs-train-ktiny"]) == 1
    assert "its output holds no run folder (run/config.yaml): there is nothing to continue" in (
        capsys.readouterr().err
    )


def test_an_earlier_kernel_kaggle_does_not_attach_is_named(
    real, tmp_path, synth_dir, monkeypatch, capsys
):
    """--resume-from a finished kernel whose output Kaggle will not attach (the client prints
    invalidKernelSources, and Kaggle creates the kernel anyway): its own message."""
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]) == 0
    _kernel_output_of(tmp_path, synth_dir, with_run=True)
    assert main(["kaggle", "kernel-status", "runs/ktiny", "--wait", "--poll", "0"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("REAL_KAGGLE_MODE", "bad-kernel-sources")
    resume = ["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]
    assert main([*resume, "--resume-from", "alice/tgs-train-ktiny"]) == 1
    assert (
        "The following are not valid kernel sources and could not be added to the kernel: "
        "['alice/tgs-train-ktiny']: Kaggle did not attach --resume-from alice/tgs-train-ktiny's "
        "output, so the kernel stops at once (it continues no run)" in capsys.readouterr().err
    )
    assert real.methods()[-1] == "SaveKernel"


def test_kernel_output_names_the_files_a_finished_run_lacks(
    real, tmp_path, tmp_path_factory, synth_dir, capsys
):
    """A finished kernel whose downloaded output lacks files its run's records name (a
    checkpoint thresholds.json lists, each fold's summary and OOF) is not adopted: each is
    named (what a client that fetched part of the listing leaves)."""
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]) == 0
    remote = Run(
        shutil.copytree(snapshot_run(tmp_path_factory, synth_dir), tmp_path / "output/run")
    )
    remote.fold(1).snapshot(2).unlink()
    shutil.copyfile(synth_dir / "sample_submission.csv", tmp_path / "output/submission.csv")
    done = dict(finished=True, stopped_at_session_limit=False, exit_code=0, resumed=False)
    TrainStatus(run="tiny", seconds=1.0, output_gb=0.0, output_limit_gb=20, **done).write(
        tmp_path / "output" / TrainStatus.FILE
    )
    assert main(["kaggle", "kernel-status", "runs/ktiny", "--wait", "--poll", "0"]) == 0
    assert main(["kaggle", "kernel-output", "runs/ktiny", "--data", str(synth_dir)]) == 1
    assert (
        "lacks files its records name: run/fold1/snapshot2.pt, run/fold0/summary.json, "
        "run/fold0/oof.npz, run/fold1/summary.json, run/fold1/oof.npz; Kaggle lists a kernel's "
        "output 20 files a page" in capsys.readouterr().err
    )
    assert not (tmp_path / "runs/ktiny").exists()


def test_resume_from_a_kernel_that_has_not_finished_is_refused(real, tmp_path, capsys):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]) == 0
    again = ["kaggle", "train", "--config", str(cfg), "--resume-from", "alice/tgs-train-ktiny"]
    assert main(again) == 1  # the canned kernel is queued on its first status poll
    err = capsys.readouterr().err
    assert "--resume-from alice/tgs-train-ktiny is queued: its output is attached only once" in err
    assert "tgs-train-ktiny-part-2" not in real.state()["kernels"]


def test_a_failed_kernel_shows_the_end_of_its_log(real, tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]) == 0
    monkeypatch.setenv("REAL_KAGGLE_MODE", "kernel-fails")
    assert main(["kaggle", "kernel-status", "runs/ktiny", "--wait", "--poll", "0"]) == 1
    err = capsys.readouterr().err
    assert "kernel alice/tgs-train-ktiny failed: ModuleNotFoundError: no smp; its log ends:" in err
    assert "  | torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in err
    assert "the whole log: build/kaggle/log/tgs-train-ktiny.log" in err


@pytest.mark.slow  # spawns processes
def test_the_training_kernel_stops_in_its_first_seconds_without_the_competition(
    real, tmp_path, competition_zip, capsys
):
    """A kernel Kaggle created without the competition (rules not accepted) stops before it
    prepares anything; so does one whose image lacks a package when it cannot install it."""
    cfg = _config(tmp_path, CONFIG, "ktiny")
    assert main(["kaggle", "train", "--config", str(cfg), "--run", "ktiny", *FAST]) == 0
    staged = tmp_path / "build/kaggle/ktiny/train/dataset"
    files = real.uploaded("alice/tgs-ktiny-train")
    proc, root = kernel_process(staged, None, tmp_path / "k1", TRAIN_SCRIPT, files=files)
    assert proc.returncode == 1
    assert (
        f"competition data not attached: no {COMP} folder under {root / 'input'} (Kaggle "
        "attaches it only once the competition's rules are accepted on the account)"
    ) in proc.stderr
    assert not list((root / "tmp").rglob("train.csv"))  # stopped before preparing the data
    proc, _ = kernel_process(
        staged,
        competition_zip,
        tmp_path / "k2",
        TRAIN_SCRIPT,
        files=files,
        versions={"albumentations": "1.4.18"},
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said[-2000:]
    assert "albumentations 1.4.18 is installed (tgs needs albumentations>=2.0)" in said
    assert "the kernel cannot reach pypi.org to install them: turn the kernel's internet on" in said
    assert "== fold 0" not in said


def _push_lite(real, tmp_path, capsys) -> dict:
    """`tgs kaggle train --no-internet` of the lite0 config: the files the client uploaded."""
    cfg = _config(tmp_path, LITE, "klite")
    assert main(["kaggle", "train", "--config", str(cfg), "--no-internet", *FAST]) == 0
    print(capsys.readouterr().out)
    meta = real.state()["kernels"]["alice/tgs-train-klite"]["meta"]
    assert meta["enableInternet"] is False and meta["enableGpu"] is True
    return real.uploaded("alice/tgs-klite-train")


@pytest.mark.parametrize("layout, form", [("flat", "folder"), ("nested", "zip")])
@pytest.mark.slow  # trains or spawns processes
def test_packaged_weights_travel_in_the_dataset_to_a_kernel_without_internet(
    real, tmp_path, competition_zip, capsys, layout, form
):
    """`encoder_weights: imagenet` on lite0 with the kernel's internet off: the wheel (its
    package and dist-info) is uploaded in packages.zip, and the kernel, with the network cut
    and the extra not installed in its image, trains on those weights, its version and hash
    checked: meta.json names the staged file."""
    files = _push_lite(real, tmp_path, capsys)
    assert sorted(files) == [
        f"{PACKAGES}.zip",
        "segmentation_models_pytorch.zip",
        "tgs-stage.json",
        "tgs.zip",
        "train-config.yaml",
    ]
    stage = json.loads(files["tgs-stage.json"].read_text())
    assert stage["internet"] is False
    assert stage["weights"] == {
        "package": LITE0.requirement,
        "sha256": LITE0.sha256,
        "folder": PACKAGES,
    }
    working = _run_on_kaggle(
        real, tmp_path, competition_zip, "klite", "session1", layout=layout, form=form
    )
    got = Run(working / "run").metadata().encoder_weights
    assert got.source == "packaged" and got.package == LITE0.requirement
    assert got.sha256 == LITE0.sha256
    where = tmp_path / "session1" / ("input" if form == "folder" else "tmp")
    assert Path(got.weights).resolve().is_relative_to(where.resolve())  # the staged copy
    assert Path(got.weights).name == Path(LITE0.file).name
    assert json.loads((working / "tgs-train.json").read_text())["finished"]


def test_without_the_extra_an_offline_kernel_is_refused_before_anything_is_uploaded(
    real, tmp_path, monkeypatch, capsys
):
    """Where the extra is not installed, imagenet for lite0 means the model hub: a kernel
    without internet could not train, so the push stops here naming the fix; and a local
    weights file, which no kernel can read, is refused with or without internet."""
    cfg = _config(tmp_path, LITE, "klite")
    with monkeypatch.context() as m:
        m.setattr(weights.Packaged, "path", lambda self: None)  # the wheel not installed
        assert main(["kaggle", "train", "--config", str(cfg), "--no-internet", *FAST]) == 1
    err = capsys.readouterr().err
    assert (
        "tu-tf_efficientnet_lite0's imagenet weights would come from the model hub, which a "
        f"kernel with its internet off (--no-internet) cannot reach: {EXTRA} here (or "
        f"{LITE0.requirement}): its weights then travel in the dataset" in err
    )
    local = tmp_path / "lite0.pth"
    shutil.copyfile(weights.PACKAGED["tf_efficientnet_lite0"].path(), local)
    assert main(["kaggle", "train", "--config", str(cfg), f"encoder_weights={local}"]) == 1
    assert f"encoder_weights {local} is a file on this machine, which a Kaggle kernel " in (
        capsys.readouterr().err
    )
    assert real.methods() == [] and not (tmp_path / "build").exists()


@pytest.mark.slow  # spawns processes
def test_an_offline_kernel_whose_dataset_lacks_the_weights_stops_in_its_first_seconds(
    real, tmp_path, competition_zip, capsys
):
    """The kernel checks too: without the staged wheel (the dataset as uploaded, less
    packages.zip) and with the extra not in its image, it stops before preparing the data,
    naming the fix."""
    files = _push_lite(real, tmp_path, capsys)
    del files[f"{PACKAGES}.zip"]
    staged = tmp_path / "build/kaggle/klite/train/dataset"
    proc, root = kernel_process(staged, competition_zip, tmp_path / "k", TRAIN_SCRIPT, files=files)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 1, said[-2000:]
    assert (
        "tu-tf_efficientnet_lite0's imagenet weights would come from the model hub, and this "
        f"kernel's internet is off; the dataset should carry them ({LITE0.requirement} in "
        f"{PACKAGES}/), but they are not there: {EXTRA} where you push" in said
    )
    assert not list((root / "tmp").rglob("train.csv"))  # stopped before preparing the data
    assert (root / "network.log").read_text() == ""
