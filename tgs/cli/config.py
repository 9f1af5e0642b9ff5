"""`tgs config`: the resolved config (YAML + `KEY=VALUE` overrides), or one key.

Handlers parse, call one library function and print. Imports that load numpy, pandas or
torch sit inside the handlers, so that `tgs --help` and `tgs config` load none of them (and
`tgs validate` no torch); the light ones are at the top.
"""

from __future__ import annotations

import argparse

from tgs.cli.common import add_command
from tgs.core.config import dump_config, load_config
from tgs.core.errors import TGSError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register config."""
    sp = add_command(
        sub, "config", _config, "print the resolved config (YAML + key=value overrides)"
    )
    sp.add_argument("--config")
    sp.add_argument("--get", help="print one key's value")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def _config(a: argparse.Namespace) -> None:
    cfg = load_config(a.config, a.overrides)
    if a.get:
        value = cfg.to_dict().get(a.get)
        if a.get not in cfg.to_dict():
            raise TGSError(f"unknown config key {a.get!r}")
        print(",".join(map(str, value)) if isinstance(value, list) else value)
    else:
        print(dump_config(cfg), end="")
