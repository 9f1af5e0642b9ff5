"""`tgs report`: the static HTML report of a run.

Handlers parse, call one library function and print; imports of the library sit inside them
so that `tgs --help`, `tgs config` and `tgs validate` do not load torch.
"""

from __future__ import annotations

import argparse

from tgs.cli.common import Command


def add_parsers(cmd: Command) -> None:
    """Register report."""
    sp = cmd("report", _report, "static HTML report of a run (finished or partial)")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="output folder (default RUN/report)")


def _report(a: argparse.Namespace) -> None:
    from tgs.report import build_report
    from tgs.run.folder import Run

    print(build_report(Run(a.run), a.data, a.out))
