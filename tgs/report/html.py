"""Small HTML helpers for the static report page (no JavaScript, no external resources)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

GENERATOR = "tgs report"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
  margin: 0 auto; padding: 10px 12px 40px; max-width: 1320px; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 16px 0 4px; }
.sub { color: #666; margin: 0 0 10px; }
.cv { font-size: 20px; margin: 6px 0; }
.cv b { font-size: 26px; }
.missing { background: #fff6d6; border: 1px solid #e8c95a; padding: 6px 12px; margin: 10px 0; }
.missing ul { margin: 4px 0; padding-left: 20px; }
.note { color: #555; font-size: 13px; margin: 4px 0 8px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; background: #fafafa; }
.cols { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
img.fig { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px 12px; }
.gallery figure { margin: 0; }
.gallery img { image-rendering: pixelated; image-rendering: crisp-edges; display: block;
  border: 1px solid #ccc; }
.gallery figcaption { font-size: 12px; color: #333; max-width: 408px;
  font-variant-numeric: tabular-nums; }
.key { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin: 0 3px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: #1a4f8b; }
pre { background: #f6f8fa; padding: 8px 12px; font-size: 12px; overflow-x: auto; }
code { font-size: 12.5px; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def code_spans(text: str) -> str:
    """Escape `text`, then show `backquoted` parts as <code>."""
    parts = esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def fmt(value: Any, digits: int = 4) -> str:
    """A cell's text: floats to `digits` decimals, None as an en dash, lists comma-joined."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """Seconds as "1 h 02 min", "12 min 05 s" or "42.0 s"."""
    if seconds is None:
        return "–"
    s = float(seconds)
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.1f} s"


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    cls = ' class="n"' if numeric else ""
    return f"<td{cls}>{esc(fmt(value))}</td>"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    raw: bool = False,
    total_last: bool = False,
) -> str:
    """An HTML table; cells are escaped and formatted unless `raw` (already HTML strings)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    rows = list(rows)
    for i, row in enumerate(rows):
        cells = "".join(f"<td>{c}</td>" if raw else _cell(c) for c in row)
        total = ' class="total"' if total_last and i == len(rows) - 1 else ""
        body.append(f"<tr{total}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def kv_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column key / value table (values escaped and formatted)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(fmt(v))}</td></tr>" for k, v in items)
    return f"<table>{rows}</table>"


def img(src: str, alt: str, width: int | None = None, cls: str = "fig") -> str:
    w = f' width="{width}"' if width else ""
    return f'<img class="{cls}" src="{esc(src)}" alt="{esc(alt)}"{w} loading="lazy">'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{GENERATOR}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
