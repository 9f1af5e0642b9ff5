"""`tgs <command>`: the parser, assembled from one module per
command group (data, submission, config, train, predict, report, kaggle), and the entry point."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tgs import __version__
from tgs.cli import config, data, kaggle, predict, report, submission, train
from tgs.core import commands
from tgs.core.errors import TGSError

GROUPS = (data, submission, config, train, predict, report, kaggle)  # in `tgs --help` order


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=" ".join(commands.PROG),
        description="TGS Salt toolkit: data -> folds -> train -> thresholds -> submission.",
    )
    p.add_argument("--version", action="version", version=f"tgs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return p


def setup_logging() -> None:
    """tgs's library messages (logging) as plain lines on stdout, once per process."""
    logger = logging.getLogger("tgs")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; KEY=VALUE overrides may come before, between or after the options
    (`run budget_minutes=5 --jobs 2 seed=1`), not only in one block."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    setup_logging()
    args = parse_args(argv)
    try:
        args.func(args)
    except TGSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
