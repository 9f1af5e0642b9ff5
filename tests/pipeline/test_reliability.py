"""Bad input, interruption and resume, atomic outputs, non-finite losses."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import ROOT, train_args
from tgs.cli.main import main
from tgs.core.config import load_config
from tgs.core.errors import ConfigError, TGSError
from tgs.core.faults import ENV as FAULT_ENV
from tgs.core.fileio import atomic_path
from tgs.data.folds import make_folds, save_folds
from tgs.data.io import load_train
from tgs.models.checkpoint import load_model, save_checkpoint
from tgs.pipeline.stages import train_fold
from tgs.run.folder import Run
from tgs.train.schedule import steps_per_epoch
from tgs.train.validate import validate_config

SLOW_TINY = """
name: kill
model: seed_unet
model_kwargs: {n_filters: 8}
geometry: resize
size: 64
n_folds: 2
epochs: 6
batch_size: 8
threads: 1
loss: bce+dice
"""


@pytest.fixture
def setup(synth_dir, tmp_path):
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(SLOW_TINY)
    data = load_train(synth_dir)
    folds = tmp_path / "folds.csv"
    save_folds(make_folds(data.ids, data.masks, data.z, 2, 0), folds)
    return cfg_path, folds


def train_cmd(cfg, data, folds, run, *extra):
    return [sys.executable, "-m", "tgs", *train_args(cfg, data, folds, 0, run, *extra)]


@pytest.mark.slow  # trains or spawns processes
def test_sigkill_then_resume_equals_uninterrupted(setup, synth_dir, tmp_path):
    """SIGKILL after the first step of epoch 3 (a fault point, so the same place on any machine),
    then --resume: the same weights, OOF and history as a run never killed."""
    cfg, folds = setup
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    n_train = (pd.read_csv(folds, dtype={"id": str})["fold"] != 0).sum()
    steps = steps_per_epoch(n_train, load_config(cfg))
    killed = tmp_path / "killed"
    proc = subprocess.run(
        train_cmd(cfg, synth_dir, folds, killed),
        env={**env, FAULT_ENV: f"kill@step#{2 * steps + 1}"},
        capture_output=True,
    )
    assert proc.returncode == -signal.SIGKILL
    assert len(pd.read_csv(killed / "fold0" / "log.csv")) == 2  # two epochs saved, the 3rd not
    assert not (killed / "fold0" / "oof.npz").exists()
    assert not list((killed / "fold0").glob(".*tmp"))  # no half-written file left visible
    # plain rerun refuses to overwrite; --resume continues
    again = subprocess.run(
        train_cmd(cfg, synth_dir, folds, killed), env=env, capture_output=True, text=True
    )
    assert again.returncode == 1 and "--resume" in again.stderr
    resumed = subprocess.run(
        train_cmd(cfg, synth_dir, folds, killed, "--resume"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stdout
    clean = tmp_path / "clean"
    done = subprocess.run(train_cmd(cfg, synth_dir, folds, clean), env=env, capture_output=True)
    assert done.returncode == 0
    a = torch.load(killed / "fold0" / "last.pt", weights_only=False)
    b = torch.load(clean / "fold0" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 5
    for key in b["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with np.load(killed / "fold0" / "oof.npz") as x, np.load(clean / "fold0" / "oof.npz") as y:
        np.testing.assert_array_equal(x["probs"], y["probs"])
    assert [h["val_score"] for h in a["history"]] == [h["val_score"] for h in b["history"]]


def test_same_seed_same_oof_on_cpu(setup, synth_dir, tmp_path):
    cfg_path, folds = setup

    cfg = load_config(cfg_path, ["epochs=1"])
    data = load_train(synth_dir)
    df = pd.read_csv(folds, dtype={"id": str})
    outs = []
    for name in ("a", "b"):
        run = tmp_path / name
        train_fold(Run(run).create(cfg), cfg, data, df, 1)
        with np.load(run / "fold1" / "oof.npz") as z:
            outs.append(z["probs"])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    setup, synth_dir, tmp_path, monkeypatch
):

    import tgs.train.trainer as train_mod

    cfg_path, folds = setup
    cfg = load_config(cfg_path, ["epochs=3"])
    real = train_mod.create_loss
    calls = {"n": 0}

    def exploding(spec):
        inner = real(spec)

        def loss(logits, target):
            calls["n"] += 1
            value = inner(logits, target)
            return value * float("nan") if calls["n"] > 4 else value

        return loss

    monkeypatch.setattr(train_mod, "create_loss", lambda spec: _Wrap(exploding(spec)))
    run = tmp_path / "nan"
    data = load_train(synth_dir)
    with pytest.raises(TGSError, match="loss became nan"):
        train_fold(Run(run).create(cfg), cfg, data, pd.read_csv(folds, dtype={"id": str}), 0)
    state = torch.load(run / "fold0" / "last.pt", weights_only=True)
    assert state["epoch"] == 0  # epoch 1 (4 batches) finished; epoch 2 blew up
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert (run / "fold0" / "best.pt").exists() and not (run / "fold0" / "oof.npz").exists()


class _Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, logits, target):
        return self.fn(logits, target)


def test_checkpoint_from_other_architecture(tmp_path):
    cfg = load_config(None, ["model=seed_unet", "model_kwargs.n_filters=4"])
    from tgs.models.registry import model_from_config

    model = model_from_config(cfg)
    other = load_config(None, ["model=unet", "encoder=resnet18"]).to_dict()
    save_checkpoint(tmp_path / "x.pt", {"model": model.state_dict(), "config": other})
    with pytest.raises(TGSError, match="another architecture"):
        load_model(tmp_path / "x.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TGSError, match="cannot read checkpoint"):
        load_model(tmp_path / "junk.pt")


@pytest.mark.parametrize(
    "override,match",
    [
        ("model=uent", "did you mean unet"),
        ("encoder=resnet33", "resnet34"),
        ("loss=bce+lovaz", "did you mean lovasz"),
        ("optimizer=adam", "adamw"),
        ("scheduler=step", "cosine"),
        ("stage2_loss=lovaz", "did you mean lovasz"),
    ],
)
def test_config_names_checked_before_any_work(override, match, tmp_path):
    """A name the config declares the values of (optimizer, scheduler) is refused when the
    config is read; a registry's name (model, encoder, loss) when it is validated."""
    model = "model=unet" if not override.startswith("model") else override
    extra = ["stage2_epochs=3"] if override.startswith("stage2") else []
    with pytest.raises((ConfigError, TGSError), match=match):
        validate_config(load_config(None, [model, override, *extra]))


def test_stage2_refuses_snapshots():
    cfg = load_config(
        None, ["stage2_epochs=2", "snapshots=true", "scheduler=cosine_restarts", "cycle_epochs=2"]
    )
    with pytest.raises(TGSError, match="snapshots"):
        validate_config(cfg)


def test_train_cli_bad_config_writes_nothing(synth_dir, tmp_path, setup):
    cfg, folds = setup
    run = tmp_path / "never"
    args = train_args(cfg, synth_dir, folds, 0, run)
    assert main([*args, "loss=dcie"]) == 1
    assert main([*args, "epoch=3"]) == 1
    assert not run.exists()


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"

    def disk_full(obj, f):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(TGSError, match=r"no space left on the device writing .*out.bin: .* free "):
        save_checkpoint(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_is_a_clear_error(tmp_path, monkeypatch):
    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(TGSError, match="cannot write .*Read-only"):
        with atomic_path(tmp_path / "x.csv"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_empty_folder_and_missing_test_images(tmp_path, synth_dir):
    (tmp_path / "empty").mkdir()
    assert main(["folds", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "f.csv")]) == 1
    assert not (tmp_path / "f.csv").exists()
    import shutil

    from tgs.core.errors import DataError
    from tgs.data.io import test_ids

    d = tmp_path / "d"
    shutil.copytree(synth_dir, d)
    victim = sorted((d / "test" / "images").iterdir())[0]
    victim.unlink()
    with pytest.raises(DataError, match=victim.stem):
        test_ids(d)
