"""Kaggle round trip against a fake `kaggle` program first on PATH; the kernel run offline."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import train_args
from tgs.cli import main
from tgs.kaggle import KaggleError, find_credentials
from tgs.submission import validate_file

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-key-value"
TINY = "name: tiny\nmodel: seed_unet\nmodel_kwargs: {n_filters: 4}\ngeometry: resize\nsize: 32\n"
TINY += "n_folds: 2\nepochs: 1\nbatch_size: 16\n"


@pytest.fixture
def fake(tmp_path, monkeypatch, competition_zip):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "kaggle"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "tests" / "fake_kaggle.py"} "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_KAGGLE_STATE", str(tmp_path / "state.json"))
    monkeypatch.setenv("FAKE_KAGGLE_ZIP", str(competition_zip))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)

    def calls():
        log = tmp_path / "calls.jsonl"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    return calls


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synth_dir):
    """A finished 2-fold run on the synthetic data, with thresholds."""
    tmp = tmp_path_factory.mktemp("run")
    (tmp / "tiny.yaml").write_text(TINY)
    folds, run = tmp / "folds.csv", tmp / "tiny"
    assert main(["folds", "--data", str(synth_dir), "--out", str(folds), "--n-folds", "2"]) == 0
    for k in (0, 1):
        assert main(train_args(tmp / "tiny.yaml", synth_dir, folds, k, run)) == 0
    assert main(["threshold", "--run", str(run)]) == 0
    return run


def test_credentials_sources(tmp_path):
    home = tmp_path / "h"
    (home / ".kaggle").mkdir(parents=True)
    with pytest.raises(KaggleError, match="kaggle.json") as e:
        find_credentials({"HOME": str(home)})
    assert "KAGGLE_USERNAME" in str(e.value)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "bob", "key": SECRET}))
    c = find_credentials({"HOME": str(home)})
    assert c.username == "bob" and SECRET not in repr(c)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "access_token").write_text("tok")
    c = find_credentials({"HOME": str(home), "KAGGLE_CONFIG_DIR": str(cfg)})
    assert c.source.endswith("access_token")
    xdg = tmp_path / "x"
    (xdg / "kaggle").mkdir(parents=True)
    (xdg / "kaggle" / "kaggle.json").write_text('{"username": "carol", "key": "k"}')
    assert (
        find_credentials({"HOME": str(tmp_path / "none"), "XDG_CONFIG_HOME": str(xdg)}).username
        == "carol"
    )
    assert find_credentials({"KAGGLE_API_TOKEN": "t"}).source == "KAGGLE_API_TOKEN"
    assert find_credentials({"KAGGLE_USERNAME": "d", "KAGGLE_KEY": "k"}).username == "d"


def test_missing_credentials_calls_nothing(fake, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert main(["kaggle", "download", "--out", str(tmp_path / "d")]) == 1
    assert "no Kaggle credentials" in capsys.readouterr().err
    assert fake() == []


def test_download_runs_cli_and_prepares(fake, tmp_path, capsys):
    out = tmp_path / "data" / "competition"
    assert main(["kaggle", "download", "--out", str(out)]) == 0
    call = fake()[0]
    assert call[:4] == ["competitions", "download", "-c", "tgs-salt-identification-challenge"]
    assert call[4] == "-p"
    assert (out / "train" / "images").is_dir() and (out / "train.csv").is_file()
    assert (out / "tgs-salt-identification-challenge.zip").is_file()
    assert SECRET not in capsys.readouterr().out


def test_403_says_accept_rules(fake, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FAKE_KAGGLE_MODE", "403")
    assert main(["kaggle", "download", "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "accept the competition rules" in err and "/rules" in err
    assert not (tmp_path / "d").exists()


def test_submit_validates_first_then_waits_for_scores(fake, tmp_path, synth_dir, capsys):
    sample = synth_dir / "sample_submission.csv"
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["x"], "rle_mask": [""]}).to_csv(bad, index=False)
    assert main(["kaggle", "submit", str(bad), "-m", "nope", "--sample", str(sample)]) == 1
    assert fake() == []  # nothing uploaded
    good = tmp_path / "good.csv"
    ids = pd.read_csv(sample, dtype=str)["id"]
    pd.DataFrame({"id": ids, "rle_mask": ""}).to_csv(good, index=False)
    (tmp_path / "good.json").write_text(
        json.dumps({"submission": "good.csv", "cv": 0.7, "data": str(synth_dir)})
    )
    assert main(["kaggle", "submit", str(good), "-m", "first try", "--wait", "--poll", "0"]) == 0
    calls = fake()
    assert calls[0] == [
        "competitions",
        "submit",
        "-c",
        "tgs-salt-identification-challenge",
        "-f",
        str(good),
        "-m",
        "first try",
    ]
    polls = [c for c in calls if c[1] == "submissions"]
    assert len(polls) == 2 and polls[0][-1] == "--csv"  # pending, then complete
    manifest = json.loads((tmp_path / "good.json").read_text())
    rec = manifest["kaggle"][-1]
    assert rec["status"] == "complete" and rec["public"] == "0.8123" and rec["private"] == "0.8345"
    assert manifest["cv"] == 0.7  # the local manifest is kept, the scores added
    assert "public 0.8123" in capsys.readouterr().out


def test_submissions_table_joins_manifests(fake, tmp_path, synth_dir, monkeypatch, capsys):
    subs = tmp_path / "submissions"
    subs.mkdir()
    ids = pd.read_csv(synth_dir / "sample_submission.csv", dtype=str)["id"]
    pd.DataFrame({"id": ids, "rle_mask": ""}).to_csv(subs / "r1-cv0.7000.csv", index=False)
    (subs / "r1-cv0.7000.json").write_text(
        json.dumps(
            {
                "submission": "r1-cv0.7000.csv",
                "run": "runs/r1",
                "cv": 0.7,
                "config": {"name": "cpu"},
                "data": str(synth_dir),
            }
        )
    )
    assert main(["kaggle", "submit", str(subs / "r1-cv0.7000.csv"), "-m", "m"]) == 0
    assert main(["kaggle", "submissions", "--dir", str(subs)]) == 0  # first poll: pending
    assert main(["kaggle", "submissions", "--dir", str(subs)]) == 0
    out = capsys.readouterr().out.splitlines()
    header = out[-2].split()
    assert header[:6] == ["file", "run", "config", "cv", "public", "private"]
    row = out[-1].split()
    assert row[:6] == ["r1-cv0.7000.csv", "runs/r1", "cpu", "0.7", "0.8123", "0.8345"]


def test_push_kernel_dry_run_then_push(fake, tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["kaggle", "push-kernel", "--run", str(tiny_run), "--dry-run"]) == 0
    assert fake() == []  # dry run calls nothing
    printed = capsys.readouterr().out
    assert "would run: kaggle kernels push -p build/kaggle/tiny/kernel" in printed
    ds = tmp_path / "build/kaggle/tiny/dataset"
    kernel = tmp_path / "build/kaggle/tiny/kernel"
    assert (ds / "tgs" / "__init__.py").is_file() and not list(ds.rglob("__pycache__"))
    for f in ("config.yaml", "thresholds.json", "fold0/best.pt", "fold1/best.pt"):
        assert (ds / "run" / f).is_file()
    dmeta = json.loads((ds / "dataset-metadata.json").read_text())
    assert dmeta["id"] == "alice/tgs-tiny-weights"
    kmeta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert kmeta["id"] == "alice/tgs-inference-tiny" and kmeta["title"] == "tgs inference tiny"
    assert kmeta["enable_internet"] is False and kmeta["kernel_type"] == "script"
    assert kmeta["language"] == "python" and kmeta["code_file"] == "tgs_inference.py"
    assert kmeta["competition_sources"] == ["tgs-salt-identification-challenge"]
    assert kmeta["dataset_sources"] == ["alice/tgs-tiny-weights"]
    assert (kernel / "tgs_inference.py").is_file()

    assert main(["kaggle", "push-kernel", "--run", str(tiny_run)]) == 0
    calls = fake()
    assert calls[0] == ["datasets", "status", "alice/tgs-tiny-weights"]
    assert calls[1] == [
        "datasets",
        "create",
        "-p",
        "build/kaggle/tiny/dataset",
        "--dir-mode",
        "zip",
    ]
    assert calls[-1] == ["kernels", "push", "-p", "build/kaggle/tiny/kernel"]
    assert main(["kaggle", "push-kernel", "--run", str(tiny_run), "-m", "v2"]) == 0
    assert [
        "datasets",
        "version",
        "-p",
        "build/kaggle/tiny/dataset",
        "-m",
        "v2",
        "--dir-mode",
        "zip",
    ] in fake()


def test_kernel_runs_offline_and_matches_predict(
    fake, tiny_run, tmp_path, monkeypatch, synth_dir, competition_zip
):
    monkeypatch.chdir(tmp_path)
    assert main(["kaggle", "push-kernel", "--run", str(tiny_run), "--dry-run"]) == 0
    inputs = tmp_path / "kaggle" / "input"
    comp = inputs / "tgs-salt-identification-challenge"  # as Kaggle mounts it: the zips + CSVs
    comp.mkdir(parents=True)
    with zipfile.ZipFile(competition_zip) as zf:
        zf.extractall(comp)
    shutil.copytree(tmp_path / "build/kaggle/tiny/dataset", inputs / "tgs-tiny-weights")
    working = tmp_path / "kaggle" / "working"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TGS_KAGGLE_INPUT=str(inputs), TGS_KAGGLE_WORKING=str(working))
    script = tmp_path / "build/kaggle/tiny/kernel/tgs_inference.py"
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=working.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(inputs / "tgs-tiny-weights") in proc.stdout or "submission.csv" in proc.stdout
    sub = working / "submission.csv"
    assert validate_file(sub, synth_dir / "sample_submission.csv") == 20
    local = tmp_path / "local.csv"
    assert (
        main(["predict", "--run", str(tiny_run), "--data", str(synth_dir), "--out", str(local)])
        == 0
    )
    assert sub.read_text() == local.read_text()  # same code, same answer
