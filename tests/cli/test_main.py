"""The command line: every command is registered with a handler of its group's module, the
library does the work (tgs.pipeline.fold for `tgs train`), and errors reach the user as
`error: ...` with exit code 1."""

import argparse
import subprocess
import sys

import pytest

from tests.helpers import ROOT, tiny_yaml
from tgs.cli.main import GROUPS, build_parser, main
from tgs.core.procs import FOLD_LAUNCHED, fold_started
from tgs.data.folds import make_folds, save_folds
from tgs.pipeline.stages import load_data


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_has_a_handler_from_its_group_module():
    commands = _commands(build_parser())
    expected = {"prepare", "synth", "holdout", "folds", "validate", "score", "config", "train"}
    expected |= {"threshold", "run", "predict", "blend", "pseudo", "report", "kaggle"}
    assert set(commands) == expected
    modules = {g.__name__ for g in GROUPS}
    for name, sp in commands.items():
        fn = sp.get_default("fn")
        assert callable(fn) and fn.__module__ in modules, name
    kaggle = _commands(commands["kaggle"])
    assert set(kaggle) == {
        "download",
        "submit",
        "submissions",
        "push-kernel",
        "kernel-status",
        "kernel-output",
    }


def test_help_and_config_do_not_import_torch():
    code = (
        "import sys; from tgs.cli.main import main\n"
        "try: main(%r)\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    )
    for argv in (["config", "--get", "seed"], ["validate", "--help"], ["--help"]):
        out = subprocess.run(
            [sys.executable, "-c", code % argv], capture_output=True, text=True, cwd=ROOT
        ).stdout
        assert out.strip().splitlines()[-1] == "False", argv


def test_train_on_a_fold_not_in_the_folds_file_is_a_clear_error(synth_dir, tmp_path, capsys):
    data = load_data(synth_dir)
    folds = tmp_path / "folds.csv"
    save_folds(make_folds(data.ids, data.masks, data.z, 2, 0), folds)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_yaml())
    argv = ["train", "--config", str(cfg), "--data", str(synth_dir), "--folds", str(folds)]
    assert main([*argv, "--fold", "3", "--run", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fold 3 is not in") and "(folds: [0, 1])" in err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_a_fold_started_when_tgs_run_launched_it(monkeypatch):
    monkeypatch.setenv(FOLD_LAUNCHED, "1234.5")
    assert fold_started() == 1234.5  # the child's imports and data count to its budget
    monkeypatch.delenv(FOLD_LAUNCHED)
    import time

    assert abs(fold_started() - time.time()) < 5  # a `tgs train` of its own: from now


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--bogus"],
        ["score", "s.csv", "--truth", "t.csv", "a=b"],
        ["report", "--run", "r", "x"],
    ],
)
def test_stray_arguments_are_refused(argv, capsys):
    """Unknown options, and KEY=VALUE or words for a command that takes none."""
    with pytest.raises(SystemExit):
        main(argv)
    assert "unrecognized arguments" in capsys.readouterr().err
