"""What the command modules share: how a sub-command is registered."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], None]
# cmd(name, handler, help) -> the sub-command's parser, its handler set as `fn`
Command = Callable[[str, Handler, str], argparse.ArgumentParser]
