"""`tgs prepare`, `tgs synth`, `tgs holdout`, `tgs folds`: the data folder and its folds.

Handlers parse, call one library function and print. Imports that load numpy, pandas or
torch sit inside the handlers, so that `tgs --help` and `tgs config` load none of them (and
`tgs validate` no torch); the light ones are at the top.
"""

from __future__ import annotations

import argparse
import time

from tgs.cli.common import add_command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register prepare, synth, holdout and folds."""
    sp = add_command(sub, "prepare", _prepare, "unpack the competition zip into a data folder")
    sp.add_argument("zip")
    sp.add_argument("--out", required=True)
    sp.add_argument("--force", action="store_true", help="replace an existing folder")

    sp = add_command(sub, "synth", _synth, "write synthetic data in the competition layout")
    sp.add_argument("--out", required=True)
    sp.add_argument("--n-train", type=int, default=800)
    sp.add_argument("--n-test", type=int, default=400)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true")

    sp = add_command(
        sub, "holdout", _holdout, "split a data folder's train set into train + scored holdout"
    )
    sp.add_argument("--data", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--frac", type=float, default=0.2)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true")

    sp = add_command(sub, "folds", _folds, "coverage-stratified k folds -> CSV")
    sp.add_argument("--data", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--n-folds", type=int, default=5)
    sp.add_argument("--seed", type=int, default=42)


def _prepare(a: argparse.Namespace) -> None:
    from tgs.data.prepare import prepare

    t0 = time.time()
    out = prepare(a.zip, a.out, force=a.force)
    print(f"prepared {out} in {time.time() - t0:.1f}s")


def _synth(a: argparse.Namespace) -> None:
    from tgs.data.synth import synth

    out = synth(a.out, a.n_train, a.n_test, a.seed, force=a.force)
    print(f"wrote synthetic data to {out} ({a.n_train} train, {a.n_test} test, seed {a.seed})")


def _holdout(a: argparse.Namespace) -> None:
    from tgs.data.holdout import make_holdout

    n_train, n_test = make_holdout(a.data, a.out, a.frac, a.seed, force=a.force)
    print(f"wrote {a.out}: {n_train} train, {n_test} held-out test images with truth.csv")


def _folds(a: argparse.Namespace) -> None:
    from tgs.data.folds import write_folds

    df = write_folds(a.data, a.out, a.n_folds, a.seed)
    sizes = df["fold"].value_counts().sort_index().tolist()
    print(f"wrote {a.out}: {len(df)} ids in {a.n_folds} folds of sizes {sizes}")
