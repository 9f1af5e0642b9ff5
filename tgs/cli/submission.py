"""`tgs validate` and `tgs score`: a submission CSV checked as Kaggle would, and scored.

Handlers parse, call one library function and print. Imports that load numpy, pandas or
torch sit inside the handlers, so that `tgs --help` and `tgs config` load none of them (and
`tgs validate` no torch); the light ones are at the top.
"""

from __future__ import annotations

import argparse

from tgs.cli.common import add_command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register validate and score."""
    sp = add_command(sub, "validate", _validate, "check a submission CSV as Kaggle would")
    sp.add_argument("submission")
    sp.add_argument("--sample", required=True, help="sample_submission.csv")

    sp = add_command(sub, "score", _score, "competition score of a submission against a truth CSV")
    sp.add_argument("submission")
    sp.add_argument("--truth", required=True, help="CSV in train.csv format")


def _validate(a: argparse.Namespace) -> None:
    from tgs.predict.submission import validate_file

    n = validate_file(a.submission, a.sample)
    print(f"OK: {a.submission} has {n} rows matching {a.sample}, all RLEs legal")


def _score(a: argparse.Namespace) -> None:
    from tgs.predict.submission import score_file

    score, n = score_file(a.submission, a.truth)
    print(f"{score:.4f}  ({n} images, {a.submission} vs {a.truth})")
