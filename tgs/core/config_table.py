"""docs/configs.md's table of config keys, made from `Config`'s declarations (type, default,
group, allowed values, doc), so the page cannot drift from the code. `python
scripts/config_table.py` writes it between the markers; tests/core/test_config_table.py fails
when the page and the code disagree."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from tgs.core.config import FIELDS, GROUPS, RUNTIME, Config
from tgs.core.schema import type_hints, type_name

BEGIN = "<!-- config keys: made from tgs.core.config.Config by scripts/config_table.py -->"
END = "<!-- end of the config keys -->"
HEADER = ("key", "type", "default", "group", "allowed", "on --resume", "what it does")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _yaml(value: Any) -> str:
    """A value as a config file writes it (a long arithmetic list shortened with ...)."""
    if isinstance(value, list) and len(value) > 6:
        step = value[1] - value[0]
        if all(b - a == step for a, b in zip(value, value[1:], strict=False)):
            return f"[{value[0]}, {value[1]}, ..., {value[-1]}]"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _allowed(f: dataclasses.Field) -> str:
    """The values a key allows, as its declaration says (choices, else its range)."""
    m = f.metadata
    if m["choices"] is not None:
        return ", ".join(str(c) for c in m["choices"])
    bounds = [(">=", m["ge"]), (">", m["gt"]), ("<=", m["le"]), ("<", m["lt"])]
    return ", ".join(f"{sign} {value:g}" for sign, value in bounds if value is not None)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def key_table() -> str:
    """Every config key as a Markdown table, in the order `Config` declares them."""
    hints = type_hints(Config)
    rows = [HEADER, tuple("---" for _ in HEADER)]
    for name, f in FIELDS.items():
        group = f.metadata["group"] or ""
        rows.append(
            (
                f"`{name}`",
                f"`{_cell(type_name(hints[name]))}`",
                f"`{_cell(_yaml(_default(f)))}`",
                group,
                _cell(_allowed(f)),
                "may change" if group == RUNTIME else "fixed",
                _cell(f.metadata["doc"]),
            )
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def section() -> str:
    """The generated part of docs/configs.md, markers included."""
    groups = ", ".join(f"`{g}`" for g in GROUPS)
    note = (
        f"Groups ({groups}): `smp_only` keys apply to smp's models only, `planned` ones are "
        "what a budget plan sets, `runtime` ones say how a run executes (not what it learns) "
        "and are the only keys that may change when a run is resumed."
    )
    return f"{BEGIN}\n{note}\n\n{key_table()}\n{END}"


def page_section(page: str) -> str | None:
    """The generated part of a page's text, markers included (None: the page has none)."""
    if BEGIN not in page or END not in page:
        return None
    start = page.index(BEGIN)
    return page[start : page.index(END, start) + len(END)]


def write(path: str | Path) -> bool:
    """Put the table into the page at `path` (between its markers, else at its end); True when
    the page changed."""
    path = Path(path)
    page = path.read_text()
    old = page_section(page)
    new_page = page.replace(old, section()) if old else page.rstrip("\n") + "\n\n" + section()
    if not new_page.endswith("\n"):
        new_page += "\n"
    if new_page == page:
        return False
    path.write_text(new_page)
    return True
