"""The Kaggle commands against the installed `kaggle` client itself, only its HTTP layer
replaced by canned answers (tests/bin/real_kaggle.py): what a user of client 2.x sees."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.kaggle_helpers import SECRET, TOKEN, run_kernel_offline, snapshot_run
from tgs.cli.main import main
from tgs.kaggle import client as kaggle_cli

COMP = "tgs-salt-identification-challenge"
FAST = ["--poll", "0"]  # the canned Kaggle shows a new dataset version after 3 status calls
PIPES = {"capture_output": True, "text": True, "stdin": subprocess.DEVNULL}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, synth_dir):
    return snapshot_run(tmp_path_factory, synth_dir)


def _submission(synth_dir, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(synth_dir / "sample_submission.csv", path)
    manifest = {"submission": path.name, "run": "runs/r1", "cv": 0.7, "data": str(synth_dir)}
    path.with_suffix(".json").write_text(json.dumps({**manifest, "config": {"name": "cpu"}}))
    return path


def test_submit_wait_and_table_through_client_warnings(
    real, tmp_path, synth_dir, monkeypatch, capsys
):
    """Items 1 and 2: an outdated client and a kaggle.json others can read print warning lines
    before the CSV; a description saying 401/403 is data. Submit --wait and the table work."""
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    key = tmp_path / "home" / ".kaggle" / "kaggle.json"
    key.parent.mkdir()
    key.write_text(json.dumps({"username": "alice", "key": SECRET}))
    key.chmod(0o644)
    monkeypatch.setenv("REAL_KAGGLE_LATEST", "2.3.0")
    sub = _submission(synth_dir, Path("submissions") / "r1-cv0.7000.csv")  # in tmp_path
    msg = "fixes 401, 403 Forbidden"
    assert main(["kaggle", "submit", str(sub), "-m", msg, "--wait", "--poll", "0"]) == 0
    out = capsys.readouterr()
    print(out.out)
    assert out.out.count("warning: the kaggle client 2.2.5 is outdated (latest 2.3.0)") == 1
    assert f"warning: {key} is readable by other users: chmod 600 {key}" in out.out
    assert "Warning:" not in out.out + out.err  # the client's own lines, shown once as tgs's
    assert "Submission ref: 50000" in out.out
    assert "submitted submissions/r1-cv0.7000.csv (complete) public 0.8123" in out.out
    rec = json.loads(sub.with_suffix(".json").read_text())["kaggle"][-1]
    assert rec["ref"] == "50000" and rec["private"] == "0.8345" and rec["message"] == msg
    assert main(["kaggle", "submissions"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[-1].split()[:7] == [sub.name, "runs/r1", "cpu", "0.7", "0.8123", "0.8345", "local"]
    assert SECRET not in out.out + out.err


def test_no_credentials(real, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert main(["kaggle", "submissions"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no Kaggle credentials found. Run `kaggle auth login`")
    assert real.requests() == []


def test_rejected_credentials(real, monkeypatch, capsys):
    """Item 2: a real 401 prints the client's auth help; tgs says the key was rejected."""
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-1234")
    assert main(["kaggle", "submissions"]) == 1
    err = capsys.readouterr().err
    assert "error: Kaggle rejected the API key from KAGGLE_KEY (401 from" in err
    assert "Authentication required" not in err and "wrong-key-1234" not in err


def test_no_network_is_named_with_its_host(real, monkeypatch, capsys):
    monkeypatch.setenv("REAL_KAGGLE_MODE", "offline")
    assert main(["kaggle", "submissions"]) == 1
    err = capsys.readouterr().err
    assert (
        "error: network failure: cannot reach api.kaggle.com ([Errno -3] Temporary failure" in err
    )


@pytest.mark.slow  # trains or spawns processes
def test_hung_network_times_out(real, monkeypatch, capsys):
    monkeypatch.setenv("REAL_KAGGLE_MODE", "hang")
    t0 = time.time()
    assert main(["kaggle", "submissions", "--timeout", "3"]) == 1
    assert time.time() - t0 < 1800  # the 3 s timeout ended it, not the stand-in's 1 h hang
    err = capsys.readouterr().err
    assert (
        "network timeout: no answer from Kaggle for 3s during `kaggle competitions submissions`"
        in err
    )


@pytest.mark.parametrize("mode", ["403", "offline"])
def test_failed_download_leaves_nothing(real, monkeypatch, tmp_path, capsys, mode):
    monkeypatch.setenv("REAL_KAGGLE_MODE", mode)
    assert main(["kaggle", "download", "--out", "data/competition"]) == 1
    err = capsys.readouterr().err
    assert ("accept the competition rules" if mode == "403" else "network failure") in err
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_download_with_progress(real, tmp_path, capsys):
    assert main(["kaggle", "download"]) == 0
    out = capsys.readouterr()
    assert "Downloading tgs-salt-identification-challenge.zip" in out.out and "100%" in out.err
    assert (tmp_path / "data/competition/train.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["competition"]


def _creds(home, tmp_path, source):
    kaggle_dir = home / ".kaggle"
    if source == "env key":
        return {"KAGGLE_USERNAME": "alice", "KAGGLE_KEY": SECRET}, "Basic"
    if source == "env token":
        return {"KAGGLE_API_TOKEN": TOKEN}, "Bearer"
    files = {
        "~/.kaggle/kaggle.json": (kaggle_dir / "kaggle.json", {"username": "alice", "key": SECRET}),
        "KAGGLE_CONFIG_DIR": (
            tmp_path / "cfg" / "kaggle.json",
            {"username": "alice", "key": SECRET},
        ),
        "XDG": (tmp_path / "xdg" / "kaggle" / "kaggle.json", {"username": "alice", "key": SECRET}),
        "~/.kaggle/access_token": (kaggle_dir / "access_token", TOKEN),
        "oauth": (
            kaggle_dir / "credentials.json",
            {
                "refresh_token": "r1",
                "access_token": TOKEN,
                "username": "alice",
                "access_token_expiration": "2999-01-01T00:00:00+00:00",
            },
        ),
    }
    path, content = files[source]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    path.chmod(0o600)
    env = {"KAGGLE_CONFIG_DIR": str(path.parent)} if source == "KAGGLE_CONFIG_DIR" else {}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "xdg")} if source == "XDG" else {})
    return env, "Basic" if path.name == "kaggle.json" else "Bearer"


@pytest.mark.parametrize(
    "source",
    [
        "env key",
        "env token",
        "~/.kaggle/kaggle.json",
        "KAGGLE_CONFIG_DIR",
        "XDG",
        "~/.kaggle/access_token",
        "oauth",
    ],
)
def test_every_credential_source_client_2x_reads(real, monkeypatch, tmp_path, capsys, source):
    """Item 7: tgs finds credentials wherever the client does, and the client uses them."""
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    env, scheme = _creds(tmp_path / "home", tmp_path, source)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["kaggle", "submissions"]) == 0, capsys.readouterr().err
    assert real.requests()[-1]["auth"] == scheme
    assert "no submissions yet" in capsys.readouterr().out
    if source in ("env token", "~/.kaggle/access_token"):  # username as the client tells it
        assert kaggle_cli.kaggle_username() == "alice"


def test_access_token_outside_home_is_not_a_source(real, monkeypatch, tmp_path, capsys):
    """$KAGGLE_CONFIG_DIR/access_token: the client does not read it, so tgs does not either."""
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "access_token").write_text(TOKEN)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert main(["kaggle", "submissions"]) == 1
    assert "no Kaggle credentials found" in capsys.readouterr().err
    client = subprocess.run(["kaggle", "competitions", "submissions", "-c", COMP], **PIPES)
    assert client.returncode == 1 and "Authentication required" in client.stdout  # agreed


@pytest.mark.slow  # trains or spawns processes
def test_push_follow_fetch_and_submit_kernel(
    real, tiny_run, tmp_path, synth_dir, competition_zip, capsys
):
    """Item 3 and the round trip: push (upload progress, kernel URL), run the kernel, follow it
    with kernel-status, fetch its output with kernel-output, submit it, see it in the table."""
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    out = capsys.readouterr()
    print(out.out)
    assert "Starting upload for file run.zip" in out.out and "Upload successful: run.zip" in out.out
    assert "100%" in out.err  # the client's upload progress bars
    assert (
        "dataset alice/tgs-tiny-weights (version 1) is ready; kernel alice/tgs-inference-tiny "
        "pushed: https://www.kaggle.com/code/alice/tgs-inference-tiny" in out.out
    )
    state = real.state()
    assert list(state["datasets"]) == ["alice/tgs-tiny-weights"]
    files = real.uploaded("alice/tgs-tiny-weights")
    assert sorted(files) == ["run.zip", "tgs-stage.json", "tgs.zip"]
    kernel = state["kernels"]["alice/tgs-inference-tiny"]
    assert kernel["attached"] == {"alice/tgs-tiny-weights": 1}
    meta = kernel["meta"]
    assert meta.get("enableInternet", False) is False and meta["newTitle"] == "tgs inference tiny"
    assert meta["datasetDataSources"] == ["alice/tgs-tiny-weights"]
    assert meta["competitionDataSources"] == [COMP]
    working, _, _ = run_kernel_offline(  # what the client uploaded, in Kaggle's newer layout
        tmp_path / "build/kaggle/tiny/dataset",
        competition_zip,
        tmp_path / "kaggle",
        files=files,
        layout="nested",
        form="zip",
    )
    for p in working.iterdir():
        shutil.copy(p, tmp_path / "output")
    assert main(["kaggle", "kernel-status", str(tiny_run), "--wait", "--poll", "0"]) == 0
    out = capsys.readouterr().out
    assert "kernel alice/tgs-inference-tiny: queued (followed 0h00m of at most 13h00m)" in out
    assert "kernel alice/tgs-inference-tiny: running (followed 0h00m" in out
    assert "kernel alice/tgs-inference-tiny: complete" in out
    assert main(["kaggle", "kernel-output", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    print(out)
    sub = (
        tmp_path
        / "submissions"
        / f"tiny-kernel-cv{json.loads((tiny_run / 'thresholds.json').read_text())['cv']:.4f}.csv"
    )
    assert (
        f"wrote submissions/{sub.name}" in out
        and f"python -m tgs kaggle submit submissions/{sub.name}" in out
    )
    manifest = json.loads(sub.with_suffix(".json").read_text())
    assert manifest["run"] == str(tiny_run) and manifest["kernel"] == "alice/tgs-inference-tiny"
    assert manifest["models"] == json.loads((tiny_run / "thresholds.json").read_text())["models"]
    assert main(["kaggle", "submit", str(sub), "-m", "kernel", "--wait", "--poll", "0"]) == 0
    assert main(["kaggle", "submissions"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:3] == [sub.name, str(tiny_run), "tiny"] and row[6] == "kernel"


@pytest.mark.parametrize(
    "mode, said",
    [
        ("dataset-error", "Dataset creation error: Notebook or dataset slug is already in use"),
        ("bad-sources", "The following are not valid dataset sources"),
        ("kernel-error", "Kernel push error: Kernel title is too long"),
    ],
)
@pytest.mark.slow  # trains or spawns processes
def test_push_fails_when_the_client_says_so(real, tiny_run, monkeypatch, capsys, mode, said):
    """Item 3: the client prints these and exits 0; push-kernel fails with its words."""
    monkeypatch.setenv("REAL_KAGGLE_MODE", mode)
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 1
    assert said in capsys.readouterr().err
    if mode == "dataset-error":
        assert "SaveKernel" not in real.methods()


def test_push_network_failure_is_not_blamed_on_create(real, tiny_run, monkeypatch, capsys):
    monkeypatch.setenv("REAL_KAGGLE_MODE", "offline")
    assert main(["kaggle", "push-kernel", str(tiny_run)]) == 1
    err = capsys.readouterr().err
    assert "network failure: cannot reach api.kaggle.com" in err
    assert "during `kaggle competitions download`" in err  # the first-use check of the rules
    assert real.methods() == ["DownloadDataFile"]  # nothing else was tried


@pytest.mark.slow  # trains or spawns processes
def test_push_long_non_ascii_run_name_passes_client_validation(real, tiny_run, tmp_path, capsys):
    """Slug and titles within the client's limits (6-50) for a 60-character non-ASCII name."""
    long = tmp_path / "runs" / ("Ünïcödé-résumé " * 4)
    shutil.copytree(tiny_run, long)
    assert main(["kaggle", "push-kernel", str(long), *FAST]) == 0, capsys.readouterr().err
    (ref,) = real.state()["datasets"]
    assert len(ref.split("/")[1]) <= 50 and ref.split("/")[1].startswith("tgs-unicode-resume")
    (kernel,) = real.state()["kernels"]
    assert len(kernel.split("/")[1]) <= 50
    assert "does not resolve to the specified id" not in capsys.readouterr().out


@pytest.mark.slow  # trains or spawns processes
def test_kernel_status_names_failures_and_unknown_kernels(real, tiny_run, monkeypatch, capsys):
    assert main(["kaggle", "kernel-status", str(tiny_run), "--user", "alice"]) == 1
    assert "error: no kernel alice/tgs-inference-tiny on Kaggle: push it" in capsys.readouterr().err
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    monkeypatch.setenv("REAL_KAGGLE_MODE", "kernel-fails")
    assert main(["kaggle", "kernel-status", str(tiny_run), "--wait", "--poll", "0"]) == 1
    err = capsys.readouterr().err
    assert "kernel alice/tgs-inference-tiny failed: ModuleNotFoundError: no smp" in err


@pytest.mark.slow  # trains or spawns processes
def test_kernel_output_without_submission_says_so(real, tiny_run, capsys):
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    assert main(["kaggle", "kernel-output", str(tiny_run)]) == 1
    assert "kernel alice/tgs-inference-tiny is queued, not complete" in capsys.readouterr().err
    assert main(["kaggle", "kernel-status", str(tiny_run), "--wait", "--poll", "0"]) == 0
    assert main(["kaggle", "kernel-output", str(tiny_run)]) == 1
    err = capsys.readouterr().err
    assert "kernel alice/tgs-inference-tiny has no submission.csv in its output" in err
    assert "tgs-inference-tiny.log" in err and not list(real.tmp.glob("submissions/*"))


def _dataset(*calls: int) -> dict:
    """The canned Kaggle's dataset alice/tgs-tiny-weights: versions 1.. with the status calls
    each has seen (3: ready; fewer: the version is new, still processing)."""
    versions = [{"n": i + 1, "files": {}, "calls": c} for i, c in enumerate(calls)]
    return {"datasets": {"alice/tgs-tiny-weights": {"owner": "alice", "versions": versions}}}


def test_the_push_waits_for_the_version_it_made(real, tiny_run, monkeypatch, capsys):
    """Right after an upload Kaggle still shows the previous version ready: the kernel is
    pushed only once the new version's number shows ready; never, with a clear error, if it
    does not within --max-wait (the kernel would train the old stage)."""
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    assert "dataset alice/tgs-tiny-weights (version 2) is ready" in capsys.readouterr().out
    assert real.state()["kernels"]["alice/tgs-inference-tiny"]["attached"] == {
        "alice/tgs-tiny-weights": 2
    }
    monkeypatch.setenv("REAL_KAGGLE_MODE", "stuck-processing")
    assert main(["kaggle", "push-kernel", str(tiny_run), "--max-wait", "0"]) == 1
    err = capsys.readouterr().err
    assert (
        "dataset alice/tgs-tiny-weights: Kaggle does not show version 3 ready after 0s (it "
        "shows version 2 ready); the kernel was not pushed" in err
    )
    assert real.state()["kernels"]["alice/tgs-inference-tiny"]["attached"] == {
        "alice/tgs-tiny-weights": 2
    }


def test_a_version_still_processing_is_waited_for_or_named(real, tiny_run, capsys):
    """A dataset whose latest version is still processing: tgs waits for it before uploading
    (Kaggle refuses a new version until then); when Kaggle still showed the previous version
    as ready, its 403 is named as what it is, not as someone else's dataset."""
    real.set_state(_dataset(9, 1))  # version 2: its next status call shows it processing
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    out = capsys.readouterr().out
    assert "dataset alice/tgs-tiny-weights (version 3) is ready" in out
    real.set_state(_dataset(9, 0))  # version 2: its next status call still shows version 1
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 1
    err = capsys.readouterr().err
    assert (
        "Kaggle refused a new version of dataset alice/tgs-tiny-weights (403 from `kaggle "
        "datasets version`: Permission 'datasets.update' was denied). Kaggle answers this while "
        "the dataset's latest version is still processing" in err
    )
    assert real.methods().count("SaveKernel") == 1  # the first push's only


def test_without_a_version_number_ready_is_taken_with_a_warning(
    real, tiny_run, monkeypatch, capsys
):
    monkeypatch.setenv("REAL_KAGGLE_MODE", "no-version-number")
    assert main(["kaggle", "push-kernel", str(tiny_run), *FAST]) == 0
    out = capsys.readouterr().out
    assert "warning: Kaggle gives no version number for alice/tgs-tiny-weights" in out
    assert "dataset alice/tgs-tiny-weights is ready; kernel" in out


@pytest.mark.parametrize(
    "mode, said",
    [
        (
            "rules-not-accepted",
            "the competition's rules are not accepted on this Kaggle account (403 from `kaggle "
            "competitions download`: You must accept this competition's rules before",
        ),
        (
            "kernel-refused",
            "Kaggle refused the kernel: `kaggle kernels push` failed (exit 1): 400 Client Error: "
            "Bad Request for url: https://api.kaggle.com/v1/kernels.KernelsApiService/"
            "SaveKernel; the kernel asked for a GPU: Kaggle gives a kernel a GPU or the "
            "internet only on a phone-verified account",
        ),
    ],
)
def test_a_gpu_inference_kernel_checks_the_rules_and_quota_first(
    real, tiny_run, monkeypatch, capsys, mode, said
):
    monkeypatch.setenv("REAL_KAGGLE_MODE", mode)
    assert main(["kaggle", "push-kernel", str(tiny_run), "--gpu", *FAST]) == 1
    assert said in capsys.readouterr().err
    if mode == "kernel-refused":
        assert "GetAcceleratorQuotaStatistics" in real.methods()
