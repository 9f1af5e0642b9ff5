"""`tgs report`: one static HTML page (index.html + PNGs) on a run folder.

Everything comes from the run's own files (config, meta, logs, summaries, OOF, thresholds,
search grid, submission) and the truth masks of its data folder; what is not there yet is listed
as missing. The page opens from disk: no server, no network, no JavaScript.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.fileio import atomic_dir
from tgs.data.cache import load_train_cached as load_data
from tgs.data.io import TrainData
from tgs.report import gallery, sections
from tgs.report.analysis import OOF, analyse_oof
from tgs.report.facts import Facts, read_facts
from tgs.report.html import GENERATOR, page
from tgs.run.folder import Run
from tgs.run.lock import locks

log = logging.getLogger(__name__)
INDEX = "index.html"
NUMBERS = "report.json"


def _replaceable(out: Path) -> None:
    """Refuse to replace a folder that is not an earlier report (or empty)."""
    if out.is_file():
        raise TGSError(f"{out} is a file: --out must be a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    index = out / INDEX
    if not (index.is_file() and GENERATOR in index.read_text(errors="replace")[:600]):
        raise TGSError(f"{out} exists and is not a tgs report: choose another --out")


def _load_data(run: Run, data_dir: str | os.PathLike | None) -> tuple[TrainData | None, str | None]:
    """(train data, None) or (None, why it could not be read)."""
    try:
        folder = run.data_dir(data_dir)
    except TGSError as e:
        return None, str(e)
    if not Path(folder).is_dir():
        return None, f"data folder {folder} not found: pass --data (OOF analysis skipped)"
    try:
        return load_data(folder), None
    except TGSError as e:
        return None, f"data folder {folder}: {e} (OOF analysis skipped)"


def _analyse(facts: Facts, data: TrainData | None) -> tuple[OOF | None, str | None]:
    """(OOF analysis, None), or (None, why not) when there is OOF but it cannot be analysed."""
    if not facts.finished or data is None:
        return None, None
    try:
        return analyse_oof(facts, data), None
    except DamagedFileError:  # a file is there but unreadable: say so, do not hide it in a note
        raise
    except TGSError as e:
        return None, f"OOF analysis skipped: {e}"


def _body(ctx: sections.Context, notes: list[str]) -> str:
    parts = [sections.header(ctx, notes), sections.glance(ctx), sections.curves(ctx)]
    if ctx.oof is not None:
        parts += [sections.where_cv(ctx), sections.search(ctx), gallery.galleries(ctx)]
    else:
        parts.append(
            '<h2>Where the CV comes from</h2><p class="note">no finished fold with '
            "truth to compare against yet (see missing above)</p>"
        )
        parts.append(sections.search(ctx))
    parts += [gallery.coverage_section(ctx), sections.submission(ctx)]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    parts.append(f'<p class="note">written by <code>tgs report</code> at {stamp}</p>')
    return "\n".join(p for p in parts if p)


@locks("run", existing=True)
def build_report(
    run: Run | str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
) -> Path:
    """Write the run's report into `out` (default RUN/report) and return its index.html.

    Raises TGSError, writing nothing, when `run` is not a run folder or `out` is something else
    than an earlier report. A partial run is rendered with what exists and a "missing" list.
    """
    t0 = time.time()
    run = run if isinstance(run, Run) else Run(run)
    facts = read_facts(run)
    out = Path(out) if out is not None else run.paths.report
    _replaceable(out)
    data, data_note = _load_data(run, data_dir)
    oof, oof_note = _analyse(facts, data)
    notes = facts.missing + [n for n in (data_note, oof_note) if n]
    with atomic_dir(out, overwrite=True) as tmp:
        ctx = sections.Context(tmp, facts, data, oof)
        html = page(f"tgs report: {run.name}", _body(ctx, notes))
        (tmp / INDEX).write_text(html)
        ctx.numbers["images"] = ctx.images
        (tmp / NUMBERS).write_text(json.dumps(ctx.numbers, indent=1, default=str) + "\n")
    log.info("report of %s written in %.1fs", run.root, time.time() - t0)
    return out / INDEX
