"""`tgs report`: the static HTML report of a run.

Handlers parse, call one library function and print. Imports that load numpy, pandas or
torch sit inside the handlers, so that `tgs --help` and `tgs config` load none of them (and
`tgs validate` no torch); the light ones are at the top.
"""

from __future__ import annotations

import argparse

from tgs.cli.common import add_command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register report."""
    sp = add_command(sub, "report", _report, "static HTML report of a run (finished or partial)")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="output folder (default RUN/report)")


def _report(a: argparse.Namespace) -> None:
    from tgs.report import build_report
    from tgs.run.folder import Run

    print(build_report(Run(a.run), a.data, a.out))
