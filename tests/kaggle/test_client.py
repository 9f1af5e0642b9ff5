"""Kaggle round trip against a fake `kaggle` program first on PATH, and the rules tgs follows
(credentials like client 2.x, errors by exit code, polling with backoff). The real client is
exercised in tests/kaggle/test_real_client.py."""

import json
import logging
import os
import shutil
import subprocess

import pandas as pd
import pytest

from tests.kaggle_helpers import SECRET, install_kaggle, snapshot_run
from tgs.cli.main import main
from tgs.kaggle import client as kaggle_cli
from tgs.kaggle.client import KaggleError, classify, find_credentials, poll

COMP = "tgs-salt-identification-challenge"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees tgs's warnings (shown once per process) on its own captured stdout."""
    monkeypatch.setattr(kaggle_cli, "_warned", set())
    monkeypatch.setattr(logging.getLogger("tgs"), "handlers", [])


@pytest.fixture
def fake(tmp_path, monkeypatch, competition_zip):
    bin_dir = install_kaggle(tmp_path, "fake_kaggle.py")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_KAGGLE_STATE", str(tmp_path / "state.json"))
    monkeypatch.setenv("FAKE_KAGGLE_ZIP", str(competition_zip))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME", "FAKE_KAGGLE_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)

    def calls():
        log = tmp_path / "calls.jsonl"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    return calls


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synth_dir):
    return snapshot_run(tmp_path_factory, synth_dir)


def _write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_credentials_where_client_2x_reads_them(tmp_path, caplog):
    """Item 7: access token (env, ~/.kaggle/access_token), kaggle.json (KAGGLE_CONFIG_DIR,
    ~/.kaggle, XDG only without ~/.kaggle), env key, OAuth credentials.json; never the secret."""
    home = tmp_path / "h"
    env = {"HOME": str(home)}
    with pytest.raises(KaggleError, match="kaggle auth login") as e:
        find_credentials(env)
    assert e.value.kind == "credentials" and "KAGGLE_API_TOKEN" in str(e.value)
    xdg = _write(tmp_path / "x" / "kaggle" / "kaggle.json", '{"username": "carol", "key": "k"}')
    assert find_credentials({**env, "XDG_CONFIG_HOME": str(xdg.parent.parent)}).username == "carol"
    oauth = {"refresh_token": "r", "access_token": "a", "username": "olga"}
    _write(home / ".kaggle" / "credentials.json", json.dumps(oauth))
    c = find_credentials({**env, "XDG_CONFIG_HOME": str(xdg.parent.parent)})
    assert (c.kind, c.username) == ("OAuth login", "olga")  # ~/.kaggle exists: XDG not read
    _write(tmp_path / "cfg" / "access_token", "tok")  # the client reads ~/.kaggle only
    cfg = {**env, "KAGGLE_CONFIG_DIR": str(tmp_path / "cfg")}
    assert find_credentials(cfg).kind == "OAuth login"
    _write(tmp_path / "cfg" / "kaggle.json", json.dumps({"username": "bob", "key": SECRET}))
    c = find_credentials(cfg)
    assert (c.kind, c.username, c.source) == ("API key", "bob", str(tmp_path / "cfg/kaggle.json"))
    assert SECRET not in repr(c)
    _write(home / ".kaggle" / "access_token", "tok\n")
    assert find_credentials(env).source == str(home / ".kaggle" / "access_token")
    assert find_credentials({"KAGGLE_API_TOKEN": "t"}).source == "KAGGLE_API_TOKEN"
    assert find_credentials({"KAGGLE_USERNAME": "d", "KAGGLE_KEY": "k"}).username == "d"
    key = _write(tmp_path / "open" / "kaggle.json", '{"username": "e", "key": "k"}')
    key.chmod(0o644)
    with caplog.at_level("WARNING", logger="tgs"):
        find_credentials({"KAGGLE_CONFIG_DIR": str(key.parent), "HOME": str(tmp_path / "n")})
    assert f"{key} is readable by other users: chmod 600 {key}" in caplog.text


def test_errors_are_decided_by_exit_code_and_client_lines():
    """Item 2 (and 3): text in a successful listing is data; a failure needs the exit code or
    one of the client's own failure lines."""
    csv = "ref,fileName,date,description,status\n1,a.csv,d,fix 401 and 403 Forbidden,x\n"
    assert classify(["competitions", "submissions"], 0, csv, "") is None
    auth = "Authentication required to call the Kaggle API.\n\nFirst, you will need..."
    assert classify(["competitions", "submissions"], 1, auth, "").kind == "rejected"
    err = classify(["datasets", "create"], 0, "Dataset creation error: slug in use\n", "")
    assert err.kind == "failed" and "Dataset creation error: slug in use" in str(err)
    net = (
        "HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded (Caused by "
        "NameResolutionError(\"...: Failed to resolve 'api.kaggle.com' ([Errno -3] Temporary "
        'failure in name resolution)"))'
    )
    err = classify(["datasets", "status"], 1, "", net)
    assert err.kind == "network" and "cannot reach api.kaggle.com ([Errno -3] Temporary" in str(err)
    forbidden = "Permission 'x' was denied\n\nYou don't have access to this resource.\n"
    assert classify(["competitions", "download"], 1, "", forbidden).kind == "forbidden"
    assert classify(["datasets", "status"], 1, "", "Not found\n\nThe resource was not found. C")
    assert classify(["x", "y"], 1, "", "boom").kind == "failed"


def test_poll_backs_off_up_to_a_maximum_wait(monkeypatch):
    """--wait polls with growing intervals (capped) and gives up after the maximum wait."""
    slept = []
    answers = iter([None, None, None, "done"])
    assert poll(lambda: next(answers), 10, 3600, sleep=slept.append) == "done"
    assert slept == [10, 15, 22.5]
    slept.clear()
    assert poll(lambda: None, 100, 1000, longest=200, sleep=slept.append) is None
    assert slept[:4] == [100, 150, 200, 200] and sum(slept) == 1000


def test_missing_credentials_calls_nothing(fake, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert main(["kaggle", "download", "--out", str(tmp_path / "d")]) == 1
    assert "no Kaggle credentials found" in capsys.readouterr().err
    assert fake() == []


def test_download_runs_cli_and_prepares(fake, tmp_path, capsys):
    out = tmp_path / "data" / "competition"
    assert main(["kaggle", "download", "--out", str(out)]) == 0
    call = fake()[0]
    assert call[:4] == ["competitions", "download", "-c", COMP] and call[4] == "-p"
    assert (out / "train" / "images").is_dir() and (out / "train.csv").is_file()
    assert (out / f"{COMP}.zip").is_file() and not (
        tmp_path / "data/.competition.download"
    ).exists()
    assert SECRET not in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["403", "403-v1"])
def test_403_says_accept_rules_and_leaves_nothing(fake, monkeypatch, tmp_path, capsys, mode):
    monkeypatch.setenv("FAKE_KAGGLE_MODE", mode)
    assert main(["kaggle", "download", "--out", str(tmp_path / "d" / "comp")]) == 1
    err = capsys.readouterr().err
    assert "accept the competition rules" in err and f"{COMP}/rules" in err
    assert list((tmp_path / "d").iterdir()) == []  # no .comp.download left behind


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
    assert calls[0] == ["competitions", "submit", "-c", COMP, "-f", str(good), "-m", "first try"]
    polls = [c for c in calls if c[1] == "submissions"]
    assert len(polls) == 2 and polls[0][-1] == "--csv"  # pending, then complete
    manifest = json.loads((tmp_path / "good.json").read_text())
    rec = manifest["kaggle"][-1]
    assert rec["status"] == "complete" and rec["public"] == "0.8123" and rec["ref"] == "100"
    assert manifest["cv"] == 0.7  # the local manifest is kept, the scores added
    assert "public 0.8123" in capsys.readouterr().out


def test_submit_finds_sample_in_default_data_folder(fake, tmp_path, synth_dir, monkeypatch):
    """A CSV without a manifest is validated against data/competition/sample_submission.csv."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "data/competition/sample_submission.csv")
    shutil.copy(synth_dir / "sample_submission.csv", tmp_path / "data/competition")
    sub = tmp_path / "mine.csv"
    shutil.copy(synth_dir / "sample_submission.csv", sub)
    assert main(["kaggle", "submit", str(sub), "-m", "no manifest"]) == 0
    assert fake()[0][1] == "submit"


def test_submissions_table_joins_manifests(fake, tmp_path, synth_dir, capsys):
    subs = tmp_path / "submissions"
    subs.mkdir()
    ids = pd.read_csv(synth_dir / "sample_submission.csv", dtype=str)["id"]
    pd.DataFrame({"id": ids, "rle_mask": ""}).to_csv(subs / "r1-cv0.7000.csv", index=False)
    manifest = {
        "submission": "r1-cv0.7000.csv",
        "run": "runs/r1",
        "cv": 0.7,
        "data": str(synth_dir),
    }
    (subs / "r1-cv0.7000.json").write_text(json.dumps({**manifest, "config": {"name": "cpu"}}))
    assert main(["kaggle", "submit", str(subs / "r1-cv0.7000.csv"), "-m", "m"]) == 0
    assert main(["kaggle", "submissions", "--dir", str(subs)]) == 0  # first poll: pending
    assert main(["kaggle", "submissions", "--dir", str(subs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].split()[:7] == ["file", "run", "config", "cv", "public", "private", "made"]
    row = out[-1].split()
    assert row[:7] == ["r1-cv0.7000.csv", "runs/r1", "cpu", "0.7", "0.8123", "0.8345", "local"]


def test_dry_run_prints_commands_that_run_when_pasted(
    fake, tiny_run, tmp_path, monkeypatch, capsys
):
    """--dry-run: shell-quoted commands; pasted into a shell they run exactly as push would."""
    odd = tmp_path / "runs" / "tiny run's $HOME"
    shutil.copytree(tiny_run, odd)
    monkeypatch.chdir(tmp_path)
    assert main(["kaggle", "push-kernel", str(odd), "--dry-run", "-m", "notes; rm -rf x"]) == 0
    assert fake() == []  # dry run calls nothing
    printed = capsys.readouterr().out
    subprocess.run(["bash", "-c", printed], check=False, cwd=tmp_path, capture_output=True)
    ds, kernel = "build/kaggle/tiny run's $HOME/dataset", "build/kaggle/tiny run's $HOME/kernel"
    assert fake() == [
        ["datasets", "status", "alice/tgs-tiny-run-s-home-weights", "--format", "json"],
        ["datasets", "create", "-p", ds, "--dir-mode", "zip"],
        ["datasets", "version", "-p", ds, "-m", "notes; rm -rf x", "--dir-mode", "zip"],
        ["kernels", "push", "-p", kernel],
    ]
    kmeta = json.loads((tmp_path / kernel / "kernel-metadata.json").read_text())
    assert kmeta["id"] == "alice/tgs-inference-tiny-run-s-home"
    assert kmeta["title"] == "tgs inference tiny-run-s-home" and kmeta["enable_internet"] is False
    assert kmeta["dataset_sources"] == ["alice/tgs-tiny-run-s-home-weights"]
    assert kmeta["competition_sources"] == [COMP] and kmeta["code_file"] == "tgs_inference.py"


def test_push_kernel_creates_then_versions(fake, tiny_run, tmp_path, monkeypatch, capsys):
    """First the rules (a download only an account that accepted them may make), then the
    dataset created (or versioned) and waited for, then the kernel."""
    monkeypatch.chdir(tmp_path)
    assert main(["kaggle", "push-kernel", str(tiny_run)]) == 0
    calls = fake()
    rules = ["competitions", "download", "-c", COMP, "-f", "sample_submission.csv", "-p"]
    assert calls[0][:7] == rules and calls[0][8:] == ["-q"]
    status = ["datasets", "status", "alice/tgs-tiny-weights", "--format", "json"]
    assert calls[1:4] == [
        status,
        ["datasets", "create", "-p", "build/kaggle/tiny/dataset", "--dir-mode", "zip"],
        status,
    ]
    assert calls[-1] == ["kernels", "push", "-p", "build/kaggle/tiny/kernel"]
    out = capsys.readouterr().out
    assert "dataset alice/tgs-tiny-weights (version 1) is ready; kernel " in out
    assert "https://www.kaggle.com/code/alice/tgs-inference-tiny" in out
    assert main(["kaggle", "push-kernel", "--run", str(tiny_run), "-m", "v2"]) == 0
    version = ["datasets", "version", "-p", "build/kaggle/tiny/dataset", "-m", "v2"]
    assert [*version, "--dir-mode", "zip"] in fake()
    assert "dataset alice/tgs-tiny-weights (version 2) is ready" in capsys.readouterr().out


def test_an_old_client_is_refused_before_it_pages_wrong(
    fake, tiny_run, tmp_path, monkeypatch, capsys
):
    """A kaggle client older than 2.2.2 downloads only the first page of a kernel's output:
    tgs says so (and how to upgrade) before pushing or fetching anything."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(kaggle_cli, "_versions", {})
    monkeypatch.setenv("FAKE_KAGGLE_VERSION", "2.2.1")
    assert main(["kaggle", "push-kernel", str(tiny_run)]) == 1
    err = capsys.readouterr().err
    assert "is 2.2.1; tgs needs kaggle >= 2.2.2 (older clients download only the first" in err
    assert "pip install -U 'kaggle>=2.2.2'" in err and fake() == []
    assert main(["kaggle", "kernel-output", str(tiny_run), "--kernel", "alice/tgs-x-y"]) == 1
    assert "tgs needs kaggle >= 2.2.2" in capsys.readouterr().err and fake() == []


def test_kernel_status_follows_a_kernel_for_its_12_hours(monkeypatch, caplog):
    """--wait polls (at most 5 min apart) for up to 13 h by default, a progress line each time:
    a kernel that runs 11 hours is followed to its end."""
    from tgs.kaggle import kernels

    answers = iter(["queued"] + ["running"] * 140 + ["complete"])
    monkeypatch.setattr(kernels, "kernel_state", lambda ref: (next(answers), None))
    slept = []
    with caplog.at_level("INFO", logger="tgs"):
        got = kernels.kernel_status("a/k-slug", wait=True, poll_seconds=30, sleep=slept.append)
    assert got == "complete" and max(slept) == 300 and 11 * 3600 < sum(slept) < 12 * 3600
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "kernel a/k-slug: queued (followed 0h00m of at most 13h00m)"
    assert lines[1] == "kernel a/k-slug: running (followed 0h00m of at most 13h00m)"
    assert len(lines) == 141 and lines[-1].startswith("kernel a/k-slug: running (followed 11h")


def test_kernel_output_refuses_an_invalid_submission(fake, tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "kout" / "submission.csv", "id,rle_mask\nx,\n")
    monkeypatch.setenv("FAKE_KAGGLE_OUTPUT", str(tmp_path / "kout"))
    assert main(["kaggle", "push-kernel", str(tiny_run)]) == 0
    assert main(["kaggle", "kernel-status", str(tiny_run)]) == 0
    assert "kernel alice/tgs-inference-tiny: complete" in capsys.readouterr().out
    assert main(["kaggle", "kernel-output", str(tiny_run)]) == 1
    err = capsys.readouterr().err
    assert "output/submission.csv: ids differ from sample_submission" in err
    assert not (tmp_path / "submissions").exists()
    assert fake()[-1][:3] == ["kernels", "output", "alice/tgs-inference-tiny"]
