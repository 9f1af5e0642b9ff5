"""The command line: every command is registered with a handler of its group's module, the
library does the work (tgs.pipeline.fold for `tgs train`), KEY=VALUE overrides go anywhere,
and errors reach the user as `error: ...` with exit code 1."""

import argparse
import subprocess
import sys

import pytest

from tests.helpers import ROOT, tiny_yaml
from tgs.cli.main import GROUPS, build_parser, main, parse_args
from tgs.data.folds import make_folds, save_folds
from tgs.kaggle import client
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
        func = sp.get_default("func")
        assert callable(func) and func.__module__ in modules, name
    kaggle = _commands(commands["kaggle"])
    assert set(kaggle) == {
        "download",
        "submit",
        "submissions",
        "train",
        "push-kernel",
        "kernel-status",
        "kernel-output",
    }
    for name, sp in kaggle.items():  # `tgs kaggle` runs them with the client's --timeout
        func = sp.get_default("kaggle_func")
        assert callable(func) and func.__module__ == "tgs.cli.kaggle", name


def test_a_parsed_command_line_names_its_handler():
    args = parse_args(["kaggle", "submit", "s.csv", "-m", "try"])
    assert (args.func.__name__, args.kaggle_func.__name__) == ("_kaggle", "_submit")
    assert parse_args(["folds", "--data", "d", "--out", "f.csv"]).func.__name__ == "_folds"


def test_help_and_config_do_not_import_torch():
    code = (
        "import sys; from tgs.cli.main import main\n"
        "try: main(%r)\nexcept SystemExit: pass\n"
        "print(*(m in sys.modules for m in ('torch', 'pandas', 'numpy')))"
    )
    for argv in (["config", "--get", "seed"], ["--help"], ["validate", "--help"]):
        out = subprocess.run(
            [sys.executable, "-c", code % argv], capture_output=True, text=True, cwd=ROOT
        ).stdout
        assert out.strip().splitlines()[-1] == "False False False", argv


def test_overrides_anywhere_in_a_train_command_line():
    argv = ["train", "seed=3", "--data", "d", "--folds", "f.csv", "lr=0.1", "--fold", "1"]
    args = parse_args([*argv, "epochs=2", "--resume"])
    assert args.overrides == ["seed=3", "lr=0.1", "epochs=2"]
    assert (args.data, args.folds, args.fold, args.resume, args.run) == (
        "d",
        "f.csv",
        1,
        True,
        None,
    )
    assert parse_args(["train", "--data", "d", "--folds", "f", "--fold", "0"]).overrides == []


def test_train_on_a_fold_not_in_the_folds_file_is_a_clear_error(synth_dir, tmp_path, capsys):
    data = load_data(synth_dir)
    folds = tmp_path / "folds.csv"
    save_folds(make_folds(data.ids, data.masks, data.z, 2, 0), folds)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(tiny_yaml())
    argv = ["train", "--config", str(cfg), "--data", str(synth_dir), "--folds", str(folds)]
    assert main([*argv, "--fold", "3", "--run", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: fold 3 is not in {folds} (folds: [0, 1])\n"
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_kaggle_timeout_holds_for_the_command_only(monkeypatch, tmp_path, capsys):
    seen = []

    def download(out, force=False):
        seen.append(client.idle_timeout())
        return out

    monkeypatch.setattr("tgs.kaggle.competition.download", download)
    monkeypatch.delenv(client.TIMEOUT_ENV, raising=False)
    out = str(tmp_path / "c")
    assert main(["kaggle", "download", "--out", out, "--timeout", "7"]) == 0
    assert main(["kaggle", "download", "--out", out]) == 0
    assert seen == [7.0, client.DEFAULT_TIMEOUT] and client.idle_timeout() == 300.0
    assert capsys.readouterr().out == f"downloaded and prepared {out}\n" * 2


def test_kaggle_submit_without_a_sample_is_refused_before_any_upload(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # no data/ or data/competition here
    monkeypatch.setattr("tgs.kaggle.competition.run_kaggle", pytest.fail)
    (tmp_path / "s.csv").write_text("id,rle_mask\n")
    assert main(["kaggle", "submit", "s.csv", "-m", "try"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot find sample_submission.csv for s.csv")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--bogus"],
        ["score", "s.csv", "--truth", "t.csv", "a=b"],
        ["report", "--run", "r", "x"],
        ["kaggle", "submissions", "seed=1"],
    ],
)
def test_stray_arguments_are_refused(argv, capsys):
    """Unknown options, and KEY=VALUE or words for a command that takes none."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_version_is_the_packages(capsys):
    from tgs import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"tgs {__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "tgs", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"tgs {__version__}"
