"""`tgs kaggle ...`: download, submit, submissions, push-kernel, kernel-status, kernel-output.

Handlers parse, call the library (tgs.kaggle) and print; its imports sit inside them so that
`tgs --help` does not load pandas or torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tgs.cli.common import Command
from tgs.core.errors import TGSError


def add_parsers(cmd: Command) -> None:
    """Register kaggle and its sub-commands."""
    sp = cmd("kaggle", _kaggle, "Kaggle round trip: download, submit, submissions, kernels")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout",
        type=float,
        help="seconds without an answer before a kaggle call counts as a network failure "
        "(default $TGS_KAGGLE_TIMEOUT or 300)",
    )
    ks = sp.add_subparsers(dest="kaggle_command", required=True, metavar="KAGGLE_COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return ks.add_parser(name, help=help, parents=[common])

    def waits(k: argparse.ArgumentParser, poll: float, max_wait: float) -> None:
        k.add_argument("--poll", type=float, default=poll, help="first wait between polls (s)")
        k.add_argument("--max-wait", type=float, default=max_wait, help="give up after (s)")

    def kernel_of(k: argparse.ArgumentParser) -> None:
        k.add_argument("run", help="run folder")
        k.add_argument("--kernel", help="OWNER/SLUG (default: the kernel push-kernel made)")
        k.add_argument("--user", help="Kaggle username (default: from the credentials)")
        k.add_argument("--title", help="kernel title given to push-kernel")
        k.add_argument("--staging", default="build/kaggle", help="push-kernel's staging folder")

    k = cmd("download", "download the competition data and unpack it")
    k.add_argument("--out", default="data/competition")
    k.add_argument("--force", action="store_true")
    k = cmd("submit", "validate, then submit a CSV (with --wait: record scores)")
    k.add_argument("file")
    k.add_argument("-m", "--message", required=True)
    k.add_argument("--wait", action="store_true", help="poll (with backoff) until scored")
    waits(k, 30.0, 3600.0)
    k.add_argument("--sample", help="sample_submission.csv (default: manifest's data, data/)")
    k = cmd("submissions", "Kaggle submissions joined with local manifests")
    k.add_argument("--dir", default="submissions")
    k = cmd("push-kernel", "stage RUN as a dataset + offline inference kernel and push both")
    k.add_argument("run", nargs="?", help="run folder")
    k.add_argument("--run", dest="run_opt", help=argparse.SUPPRESS)
    k.add_argument("--user", help="Kaggle username (default: from the credentials)")
    k.add_argument("--dataset", help="dataset slug (default tgs-<run>-weights, cut to 50)")
    k.add_argument("--title", help="kernel title (default 'tgs inference <run>', cut to 50)")
    k.add_argument("--gpu", action="store_true", help="enable the GPU in the kernel")
    k.add_argument("-m", "--message", default="tgs push-kernel", help="dataset version notes")
    k.add_argument("--dry-run", action="store_true", help="stage only; print the commands")
    k.add_argument("--staging", default="build/kaggle")
    k.add_argument("--max-wait", type=float, default=1800.0, help="for the dataset to be ready")
    k = cmd("kernel-status", "status of RUN's kernel (with --wait: until it finishes)")
    kernel_of(k)
    k.add_argument("--wait", action="store_true", help="poll (with backoff) until finished")
    waits(k, 30.0, 7200.0)
    k = cmd("kernel-output", "fetch RUN's kernel submission.csv, validate it, write a manifest")
    kernel_of(k)
    k.add_argument("--sample", help="sample_submission.csv (default: the run's data, data/)")
    k.add_argument("--dir", default="submissions", help="where the submission goes")


def _sample_for(submission: Path, sample: str | None) -> Path:
    """sample_submission.csv for validating `submission`: --sample, else its manifest's data,
    else data/ or data/competition."""
    from tgs.kaggle.competition import find_sample

    return find_sample(submission, sample)


def _kaggle(a: argparse.Namespace) -> None:
    from tgs.kaggle import client as kaggle_cli

    kaggle_cli.set_timeout(a.timeout)
    try:
        _kaggle_command(a)
    finally:
        kaggle_cli.set_timeout(None)


def _kaggle_command(a: argparse.Namespace) -> None:
    import shlex

    from tgs.kaggle import competition as kaggle
    from tgs.kaggle import kernels as kaggle_kernel

    cmd = a.kaggle_command
    if cmd == "download":
        print(f"downloaded and prepared {kaggle.download(a.out, force=a.force)}")
    elif cmd == "submit":
        path = Path(a.file)
        sample = _sample_for(path, a.sample)
        rec = kaggle.submit(path, a.message, sample, a.wait, a.poll, a.max_wait)
        scores = f" public {rec.get('public')} private {rec.get('private')}" if a.wait else ""
        manifest = path.with_suffix(".json")
        print(f"submitted {path} ({rec['status']}){scores}; recorded in {manifest}")
    elif cmd == "submissions":
        import pandas as pd

        table = kaggle.submissions_table(a.dir)
        with pd.option_context("display.width", 200, "display.max_colwidth", 40):
            print(table.to_string(index=False) if len(table) else "no submissions yet")
    elif cmd == "push-kernel":
        run = a.run or a.run_opt
        if not run:
            raise TGSError("push-kernel needs the run folder: python -m tgs kaggle push-kernel RUN")
        p = kaggle_kernel.push_kernel(
            run, a.user, a.dataset, a.title, a.gpu, a.dry_run, a.message, a.staging, a.max_wait
        )
        if a.dry_run:
            from tgs.kaggle.client import shell_command

            status, create, version, push = (shell_command(c) for c in p.commands)
            print(f"# dry run: staged {p.staged}/dataset and {p.staged}/kernel; called nothing.")
            print("# the commands push-kernel runs (paste them to push by hand):")
            print(f"{status}\n{create}  # a new dataset\n{version}  # an existing one")
            print(f"{push}  # once `{status}` says ready")
            return
        print(f"dataset {p.dataset_ref} is ready; kernel {p.kernel_ref} pushed: {p.kernel_url}")
        print(f"follow it: python -m tgs kaggle kernel-status {shlex.quote(run)} --wait")
    elif cmd in ("kernel-status", "kernel-output"):
        ref = kaggle_kernel.kernel_ref(a.run, a.kernel, a.user, a.title, a.staging)
        if cmd == "kernel-status":
            status = kaggle_kernel.kernel_status(ref, a.wait, a.poll, a.max_wait)
            print(f"kernel {ref}: {status}")
            if status == "complete":
                print(f"next: python -m tgs kaggle kernel-output {shlex.quote(a.run)}")
            return
        path = kaggle_kernel.kernel_output(a.run, ref, a.sample, a.dir, a.staging)
        print(f"wrote {path} (valid; manifest {path.with_suffix('.json')}) from kernel {ref}")
        print("next: python -m tgs kaggle submit " + shlex.join([str(path), "-m", ref]))
