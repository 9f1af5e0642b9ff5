"""Every file a stage reads from a run folder, damaged (missing, cut short, not its format, a field
of the wrong type): the stage exits 1 with one message naming the file and a command (or the
step) that rebuilds it, no traceback, and writes nothing."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tgs.cli.main import main
from tgs.run.lock import LOCK_FILE


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _junk(path: Path) -> None:
    path.write_bytes(b"\x00\x01 not what tgs wrote {")


def _json_field(key, value):
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        data[key] = value
        path.write_text(json.dumps(data))

    return damage


def _npz_without(key):
    def damage(path: Path) -> None:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != key}
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    return damage


def _old_release_config(line: str):
    """A config.yaml of a run older than meta.json's config hash, with `line` added."""

    def damage(path: Path) -> None:
        meta = path.parent / "meta.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "config_sha256": None}))
        path.write_text(path.read_text() + line)

    return damage


PREDICT, THRESHOLD, REPORT = ["predict"], ["threshold"], ["report"]
RESUME = ["run", "--resume", "--no-report"]
TRAIN = ["train", "--fold", "0", "--resume"]
# (file in the run, damage, command, words the message must hold besides the file's path)
CASES = [
    ("config.yaml", _cut, PREDICT, "cut short or edited"),
    ("config.yaml", _junk, THRESHOLD, "train a new --run"),
    ("config.yaml", _old_release_config("epochs: [1]\n"), PREDICT, "epochs should be an integer"),
    ("config.yaml", _junk, TRAIN, "not a YAML config"),
    ("config.yaml", _junk, RESUME, "is damaged"),
    ("meta.json", _cut, PREDICT, "rebuild it with `python -m tgs run --config"),
    ("meta.json", lambda p: p.write_text("[]"), PREDICT, "--resume --data DATA`"),
    ("meta.json", _json_field("data", 3), PREDICT, "'data' should be a string"),
    ("thresholds.json", Path.unlink, PREDICT, "python -m tgs threshold --run"),
    ("thresholds.json", _cut, REPORT, "rebuild it with `python -m tgs threshold"),
    ("thresholds.json", _json_field("threshold", "high"), PREDICT, "'threshold' should be"),
    ("fold0/summary.json", _junk, REPORT, "python -m tgs train --run"),
    ("fold0/summary.json", _json_field("best_epoch", "x"), RESUME, "--fold 0 --resume"),
    ("fold0/log.csv", _junk, REPORT, "training rewrites it each epoch"),
    ("fold0/oof.npz", _cut, THRESHOLD, "rebuild it with `python -m tgs train --run"),
    ("fold0/oof.npz", _junk, REPORT, "--fold 0 --resume"),
    ("fold0/oof.npz", _npz_without("probs"), THRESHOLD, "lacks probs"),
    ("search.npz", _cut, REPORT, "python -m tgs threshold --run"),
    ("fold0/best.pt", _cut, PREDICT, "train the fold again: delete"),
    ("fold0/best.pt", _junk, PREDICT, "--resume`"),
    ("fold0/last.pt", _cut, TRAIN, "train the fold again: delete"),
    ("plan.json", _junk, REPORT, "plan.json is not JSON"),
]


@pytest.fixture(autouse=True)
def own_log_handler(monkeypatch):
    """tgs's log handler bound to this test's stdout, not to an earlier test's closed one."""
    monkeypatch.setattr(logging.getLogger("tgs"), "handlers", [])


def _tree(root: Path) -> dict:
    """Every file's size and mtime, but the writer locks' (a refused stage held one)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.mark.slow  # trains or spawns processes
@pytest.mark.parametrize("name, damage, command, words", CASES)
def test_a_damaged_run_file_is_named_with_its_rebuild_and_nothing_is_written(
    made, tmp_path, synth_dir, monkeypatch, capsys, name, damage, command, words
):
    for part in ("r", "b", "folds", "submissions"):
        shutil.copytree(made / part, tmp_path / part)
    shutil.copy(made / "tiny.yaml", tmp_path / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    path = Path("r") / name
    if not path.exists():  # plan.json: only a budgeted run has one
        path.write_text("{}")
    damage(path)
    before = _tree(tmp_path)
    given = ["--config", "tiny.yaml", "--data", str(synth_dir)] if command is RESUME else []
    args = [*command, "--run", "r", *given]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and words in err, err
    assert _tree(tmp_path) == before  # the failing stage wrote nothing


@pytest.mark.slow  # trains or spawns processes
@pytest.mark.parametrize("damage", [_cut, _json_field("members", "r")])
def test_a_damaged_blend_record_is_named(made, tmp_path, monkeypatch, capsys, damage):
    shutil.copytree(made / "b", tmp_path / "b")
    shutil.copytree(made / "r", tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    damage(Path("b/blend.json"))
    before = _tree(tmp_path)
    assert main(["blend", "--out", "b"]) == 1
    err = capsys.readouterr().err
    assert "b/blend.json" in err and "Traceback" not in err and "rebuild it with" in err, err
    assert _tree(tmp_path) == before
