"""A full disk: a real one (a 256 KB tmpfs, where this machine lets the tests mount one) and an
injected ENOSPC at the writes that are not a run's (the data cache, a staged Kaggle dataset)."""

import logging
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from tgs.cli.main import main
from tgs.core.fileio import DiskFullError
from tgs.data.cache import load_train_cached
from tgs.models.checkpoint import save_checkpoint


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs (skipped where mounting is not allowed: not root, a container)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        # still busy (a file a test left open): detach it now, freed once the file closes, so
        # no mount outlives the session (pytest cannot delete a folder under a mount point)
        subprocess.run(["umount", "--lazy", str(mount)], capture_output=True, check=False)


def test_a_real_full_disk_under_torch_save_is_named_and_leaves_nothing(small_disk):
    """torch.save reports a full disk as a RuntimeError of its zip writer, not as ENOSPC."""
    target = small_disk / "fold0" / "last.pt"
    save_checkpoint(target, {"model": {"w": torch.zeros(10)}})
    before = target.read_bytes()
    with pytest.raises(DiskFullError) as e:
        save_checkpoint(target, {"model": {"w": torch.zeros(1_000_000)}})  # 4 MB
    assert f"no space left on the device writing {target}: " in str(e.value)
    assert " free there, at least " in str(e.value)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]
    assert target.read_bytes() == before  # the earlier checkpoint is untouched


def test_a_full_disk_at_the_data_cache_is_a_warning_and_the_data_still_load(
    tmp_path, synth_dir, monkeypatch, caplog
):
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data, ignore=shutil.ignore_patterns(".tgs-cache"))
    monkeypatch.setenv("TGS_FAULT", "enospc@write:train.npz")
    with caplog.at_level(logging.WARNING, logger="tgs"):
        loaded = load_train_cached(data)
    assert len(loaded.ids) == 60
    assert "could not cache the decoded data" in caplog.text
    assert "no space left on the device writing" in caplog.text
    assert not list(data.rglob("*.tmp")) and not list(data.rglob("train.npz"))


@pytest.mark.slow  # trains or spawns processes
def test_a_full_disk_while_staging_a_kaggle_dataset_leaves_none(
    tmp_path, synth_dir, monkeypatch, capsys
):
    from tests.kaggle_helpers import snapshot_run

    class Factory:  # snapshot_run's tmp_path_factory, here
        def mktemp(self, name):
            return Path(tmp_path / name)

    run = snapshot_run(Factory(), synth_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TGS_FAULT", "enospc@writedir:dataset")
    assert main(["kaggle", "push-kernel", str(run), "--dry-run", "--user", "alice"]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device writing build/kaggle/tiny/dataset" in err, err
    assert not (tmp_path / "build/kaggle/tiny/dataset").exists()
    assert not list((tmp_path / "build").rglob("*.tmp"))
    monkeypatch.delenv("TGS_FAULT")
    assert main(["kaggle", "push-kernel", str(run), "--dry-run", "--user", "alice"]) == 0
