"""What a kernel finds under each of Kaggle's mount layouts: the dataset of its stage (by its
stage id), a named file of it (folder or zip), the competition, an earlier kernel's run. The
kernels themselves run in each layout in test_inference_kernel.py and test_kaggle_train.py."""

import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tests.kaggle_helpers import FORMS, mount_dataset
from tgs import COMPETITION
from tgs.core.errors import TGSError
from tgs.kaggle.kernel_boot import find_stage, import_tgs
from tgs.kaggle.mounts import competition_dir, earlier_run, folder_on_path, staged_file

DATASET = {"flat": "tgs-x-weights", "nested": "datasets/alice/tgs-x-weights"}
COMPETITION_AT = {"flat": COMPETITION, "nested": f"competitions/{COMPETITION}"}
EARLIER_AT = {"flat": "tgs-train-x", "nested": "notebooks/alice/tgs-train-x"}


def _uploaded(tmp: Path, stage_id: str) -> dict[str, Path]:
    """A staged dataset's files as the client uploads them (folders zipped)."""
    src = tmp / "src"
    (src / "tgs").mkdir(parents=True)
    (src / "tgs" / "__init__.py").write_text("")
    (src / "run" / "fold0").mkdir(parents=True)
    (src / "run" / "fold0" / "best.pt").write_bytes(b"weights")
    (src / "encoder.pth").write_bytes(b"an encoder's weights")
    (src / "packages" / "wheel_mod").mkdir(parents=True)  # a staged wheel (packaged weights)
    (src / "packages" / "wheel_mod" / "__init__.py").write_text("")
    (src / "tgs-stage.json").write_text(json.dumps({"stage_id": stage_id, "staged": "now"}))
    files = {}
    for p in src.iterdir():
        made = shutil.make_archive(str(tmp / "up" / p.name), "zip", p) if p.is_dir() else p
        files[Path(made).name] = Path(made)
    return files


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_each_layout_and_form(tmp_path, monkeypatch, layout, form):
    monkeypatch.setattr(sys, "path", list(sys.path))  # import_tgs puts the staged tgs first
    inputs = tmp_path / "input"
    mount_dataset(_uploaded(tmp_path, "s-1"), inputs / DATASET[layout], form)
    (inputs / COMPETITION_AT[layout]).mkdir(parents=True)
    (inputs / EARLIER_AT[layout] / "run").mkdir(parents=True)
    (inputs / EARLIER_AT[layout] / "run" / "config.yaml").write_text("name: x\n")
    staged = find_stage(inputs, "s-1")
    assert staged == inputs / DATASET[layout]
    scratch = tmp_path / "scratch"
    assert import_tgs(staged, scratch) == (staged if form == "folder" else scratch)
    assert staged_file(staged, "run/fold0/best.pt", scratch).read_bytes() == b"weights"
    assert staged_file(staged, "run", scratch).is_dir()
    assert staged_file(staged, "encoder.pth", scratch).read_bytes() == b"an encoder's weights"
    assert staged_file(staged, "weights.pt", scratch) is None
    wheels = folder_on_path(staged, "packages", scratch)
    assert wheels == (staged if form == "folder" else scratch) / "packages"
    assert sys.path[0] == str(wheels) and (wheels / "wheel_mod" / "__init__.py").is_file()
    assert competition_dir(inputs) == inputs / COMPETITION_AT[layout]
    assert earlier_run(inputs, staged) == inputs / EARLIER_AT[layout] / "run"


def test_another_stage_or_none_stops_the_kernel(tmp_path):
    inputs = tmp_path / "input"
    with pytest.raises(SystemExit, match="no dataset staged by tgs is attached"):
        find_stage(inputs, "s-2")
    mount_dataset(_uploaded(tmp_path, "s-1"), inputs / DATASET["nested"], "zip")
    with pytest.raises(SystemExit, match=r"stage id mismatch: .* stage s-2, but .* stage s-1"):
        find_stage(inputs, "s-2")
    with pytest.raises(TGSError, match="competition data not attached"):
        competition_dir(inputs)
    assert earlier_run(inputs, inputs / DATASET["nested"]) is None


def test_a_staged_run_zip_is_unpacked_once(tmp_path):
    staged = tmp_path / "ds"
    staged.mkdir()
    with zipfile.ZipFile(staged / "run.zip", "w") as zf:
        zf.writestr("config.yaml", "name: x\n")
    first = staged_file(staged, "run/config.yaml", tmp_path / "scratch")
    first.write_text("changed")
    assert staged_file(staged, "run/config.yaml", tmp_path / "scratch").read_text() == "changed"
