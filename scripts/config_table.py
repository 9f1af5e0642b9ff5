#!/usr/bin/env python
"""Write docs/configs.md's table of config keys from `tgs.core.config.Config` (between its
markers; tests/core/test_config_table.py fails until the page is written again after a key
changes).

    python scripts/config_table.py [docs/configs.md]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    from tgs.core.config_table import write

    page = Path(argv[0]) if argv else ROOT / "docs" / "configs.md"
    print(f"{page}: {'written' if write(page) else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
