"""Every command line tgs prints or starts (tgs.core.commands) parses with the real parser into
the options it means: a renamed flag or sub-command fails here, not in a user's terminal."""

import shlex

import pytest

from tgs.cli.main import build_parser
from tgs.core import commands
from tgs.core.commands import PROG


def _parsed(command: commands.Command):
    words = shlex.split(str(command))
    assert words[: len(PROG)] == list(PROG)
    return build_parser().parse_args(words[len(PROG) :])


# (command, the parsed arguments it must give)
CASES = [
    (commands.resume_run("runs/a b"), {"command": "run", "run": "runs/a b", "resume": True}),
    (commands.resume_run("r", config="c.yaml"), {"config": "c.yaml", "run": "r"}),
    (commands.train_fold("runs/x", 3), {"command": "train", "run": "runs/x", "fold": 3}),
    (commands.threshold("runs/x"), {"command": "threshold", "run": "runs/x"}),
    (commands.predict("runs/x"), {"command": "predict", "run": "runs/x"}),
    (commands.report("runs/x"), {"command": "report", "run": "runs/x"}),
    (commands.blend("b", ("r1", "r2")), {"command": "blend", "runs": ["r1", "r2"], "out": "b"}),
    (commands.make_folds("d", "f.csv"), {"command": "folds", "data": "d", "out": "f.csv"}),
    (commands.prepare("c.zip", "d"), {"command": "prepare", "zip": "c.zip", "out": "d"}),
    (commands.show_config("cpu"), {"command": "config", "config": "cpu"}),
    (commands.kaggle_submit("s.csv", "a b"), {"file": "s.csv", "message": "a b"}),
    (commands.kaggle_submissions(), {"command": "kaggle"}),
    (commands.kaggle_download(), {"command": "kaggle"}),
    (commands.push_kernel("runs/x", dry_run=True), {"run": "runs/x", "dry_run": True}),
    (
        commands.kernel_status("runs/x", kernel="me/k"),
        {"run": "runs/x", "kernel": "me/k", "wait": True},
    ),
    (commands.kernel_output("runs/x"), {"run": "runs/x", "kernel": None}),
    (commands.kernel_output("runs/x", kernel="me/k"), {"run": "runs/x", "kernel": "me/k"}),
    (
        commands.start_run(config="c.yaml", data="d", run="r", resume=True, gpus="0,1"),
        {"command": "run", "config": "c.yaml", "data": "d", "run": "r", "resume": True}
        | {"gpus": "0,1"},
    ),
    (commands.start_run(config="c", data="d", run="r"), {"resume": False, "gpus": None}),
    (
        commands.kaggle_train("c.yaml", "n", resume_from="me/k", staging="s"),
        {"config": "c.yaml", "run": "n", "resume_from": "me/k", "staging": "s"},
    ),
    (
        commands.train_child(config="c", data="d", folds="f", fold=2, run="r", resume=True),
        {"command": "train", "config": "c", "data": "d", "folds": "f", "fold": 2, "run": "r"},
    ),
]


@pytest.mark.parametrize("command, expected", CASES, ids=lambda c: str(c)[:40])
def test_each_command_parses_into_what_it_means(command, expected):
    args = _parsed(command)
    assert {k: getattr(args, k) for k in expected} == expected


def test_a_child_command_runs_tgs_with_the_given_python():
    argv = commands.train_fold("r", 0).argv("/opt/py")
    assert argv[:3] == ["/opt/py", "-m", "tgs"] and argv[3:] == list(
        commands.train_fold("r", 0).words
    )


def test_library_code_spells_no_command_line(tmp_path):
    """`python -m tgs ...` is written in tgs.core.commands only (and in the prose of the
    inference kernel template's docstring, which a user reads on Kaggle)."""
    from tests.helpers import ROOT

    allowed = {"tgs/core/commands.py", "tgs/resources/kernels/tgs_inference.py"}
    found = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tgs").rglob("*.py")
        if "python -m tgs" in p.read_text() or '"-m", "tgs"' in p.read_text()
    ]
    assert [p for p in found if p not in allowed] == []
