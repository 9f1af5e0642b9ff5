"""What the command modules share: how a sub-command is registered."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], None]


def add_command(
    sub: argparse._SubParsersAction, name: str, handler: Handler, help_: str
) -> argparse.ArgumentParser:
    """Sub-command `name` of `sub` (the parser's add_subparsers()), with `help_` as its help
    and description; `main` runs `handler` (the parsed arguments' `func`)."""
    sp = sub.add_parser(name, help=help_, description=help_)
    sp.set_defaults(func=handler)
    return sp
