"""A finished tiny run (and a blend of it) made once for the run-folder tests that damage or
lock it (each copies what it changes)."""

import pytest

from tests.helpers import tiny_yaml
from tgs.cli.main import main


@pytest.fixture(scope="session")
def made(tmp_path_factory, synth_dir):
    """A finished 2-fold tiny run (and a blend of it) with its submission, made once."""
    root = tmp_path_factory.mktemp("made")
    cfg = root / "tiny.yaml"
    cfg.write_text(tiny_yaml(threads=1, max_train_batches=2))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(["run", "--config", str(cfg), "--data", str(synth_dir), "--run", "r"]) == 0
        assert main(["blend", "r", "r", "--out", "b", "--data", str(synth_dir)]) == 0
    return root
