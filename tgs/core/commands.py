"""Every command line tgs prints or starts, spelled once: the hints in its messages (rebuild a
file, resume a run, the next step) and the fold processes `tgs run` launches.

Library code asks this module for a command and never writes `python -m tgs ...` itself.
tests/cli/test_commands.py parses each command built here with the real parser
(`tgs.cli.main.build_parser`), so a renamed flag or sub-command fails the test.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass

PROG = ("python", "-m", "tgs")  # how the hints run tgs (no console script needed)
Arg = str | os.PathLike | int | float


@dataclass(frozen=True)
class Command:
    """A tgs command line: `words` after the program (sub-command, options, values)."""

    words: tuple[str, ...]

    def __str__(self) -> str:
        """The line a user types (quoted for a POSIX shell)."""
        return shlex.join([*PROG, *self.words])

    def argv(self, python: str = sys.executable) -> list[str]:
        """The argument list that runs it with `python` (a child process)."""
        return [python, "-m", "tgs", *self.words]

    def __add__(self, more: list[str] | tuple[str, ...]) -> Command:
        return Command((*self.words, *map(str, more)))


def _command(*words: Arg, **options: Arg | bool | None) -> Command:
    """Sub-command `words`, then `--flag value` per option (`flag_name` -> `--flag-name`;
    True: the flag alone; None, False: left out)."""
    out = [str(w) for w in words]
    for name, value in options.items():
        if value is None or value is False:
            continue
        out.append("--" + name.replace("_", "-"))
        if value is not True:
            out.append(str(value))
    return Command(tuple(out))


# -- a run and its stages --------------------------------------------------------------------
def resume_run(run: Arg, config: Arg | None = None) -> Command:
    """Continue run folder `run` (started folds go on, finished ones are skipped) and rewrite its
    run-level files; `config` default: the run's own config.yaml."""
    return _command("run", config=config or os.path.join(run, "config.yaml"), run=run, resume=True)


def start_run(
    *, config: Arg, data: Arg, run: Arg, resume: bool = False, gpus: str | None = None
) -> Command:
    """`tgs run` of `config` on `data` into the run folder `run` (`resume`: continue it; `gpus`:
    the GPU ids, "0,1", one fold per GPU), as a Kaggle training kernel starts it."""
    return _command("run", config=config, data=data, run=run, resume=resume, gpus=gpus)


def train_fold(run: Arg, fold: Arg) -> Command:
    """Continue fold `fold` of `run`, or rebuild its OOF and summary once it is trained."""
    return _command("train", run=run, fold=fold, resume=True)


def train_child(
    *, config: Arg, data: Arg, folds: Arg, fold: int, run: Arg, resume: bool = False
) -> Command:
    """The `tgs train` process `tgs run` starts for one fold (`--run-dir`: torchrun takes
    `--run` for itself)."""
    return _command("train", config=config, data=data, folds=folds, fold=fold, run_dir=run) + (
        ["--resume"] if resume else []
    )


def threshold(run: Arg) -> Command:
    """(Re)write the run's thresholds.json and search.npz."""
    return _command("threshold", run=run)


def predict(run: Arg) -> Command:
    """Write the run's submission."""
    return _command("predict", run=run)


def report(run: Arg) -> Command:
    return _command("report", run=run)


def blend(out: Arg, runs: tuple[Arg, ...] = ("RUN", "RUN")) -> Command:
    """Make the blend folder `out` of `runs` again."""
    return _command("blend", *runs, out=out)


def make_folds(data: Arg = "DATA", out: Arg = "FOLDS.csv") -> Command:
    return _command("folds", data=data, out=out)


def prepare(zip_path: Arg = "COMPETITION.zip", out: Arg = "DATA") -> Command:
    return _command("prepare", zip_path, out=out)


def show_config(config: Arg = "CFG") -> Command:
    """Print a config resolved."""
    return _command("config", config=config)


# -- Kaggle ----------------------------------------------------------------------------------
def kaggle_submit(path: Arg = "FILE", message: str = "MESSAGE") -> Command:
    return _command("kaggle", "submit", path, message=message)


def kaggle_submissions() -> Command:
    return _command("kaggle", "submissions")


def kaggle_download() -> Command:
    return _command("kaggle", "download")


def push_kernel(run: Arg = "RUN", dry_run: bool = False) -> Command:
    return _command("kaggle", "push-kernel", run, dry_run=dry_run)


def kernel_status(run: Arg, kernel: str | None = None, wait: bool = True) -> Command:
    return _command("kaggle", "kernel-status", run, kernel=kernel, wait=wait)


def kernel_output(run: Arg = "RUN", kernel: str | None = None) -> Command:
    """Bring RUN's kernel output back (`kernel`: that kernel's, OWNER/SLUG)."""
    return _command("kaggle", "kernel-output", run, kernel=kernel)


def kaggle_train(
    config: Arg, run: str, resume_from: str | None = None, staging: Arg | None = None
) -> Command:
    """Push a training kernel (`resume_from`: continue an earlier kernel's run)."""
    return _command(
        "kaggle", "train", config=config, run=run, staging=staging, resume_from=resume_from
    )
