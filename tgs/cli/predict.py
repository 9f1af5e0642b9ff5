"""`tgs predict`, `tgs blend`, `tgs pseudo`: test-set predictions of a run or a blend, and
pseudo-labels.

Handlers parse, call one library function and print. Imports that load numpy, pandas or
torch sit inside the handlers, so that `tgs --help` and `tgs config` load none of them (and
`tgs validate` no torch); the light ones are at the top.
"""

from __future__ import annotations

import argparse

from tgs.cli.common import add_command
from tgs.core.errors import TGSError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register predict, blend and pseudo."""
    sp = add_command(sub, "predict", _predict, "fold ensemble x TTA on the test set -> submission")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="submission path (default submissions/<run>-cv<CV>.csv)")
    sp.add_argument("--batch-size", type=int, default=256)
    sp.add_argument("--tta", help="TTA views (default: the one the thresholds were searched with)")
    sp = add_command(
        sub, "blend", _blend, "average finished runs (same folds) -> search -> one submission"
    )
    sp.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="finished runs made on one folds file (none: predict the blend in --out again)",
    )
    sp.add_argument("--out", required=True, help="blend folder (blend.json, thresholds.json)")
    sp.add_argument("--data", help="data folder, test set too (default: the first run's)")
    sp.add_argument("--weights", help="e.g. 2,1: one per run (default: equal)")
    sp.add_argument("--gate", help="head, mask_max or mean (default: the first run's)")
    sp.add_argument("--no-predict", action="store_true", help="search only, no submission")
    sp.add_argument("--batch-size", type=int, default=256)
    sp = add_command(
        sub, "pseudo", _pseudo, "confident test predictions of RUN -> an extra training set"
    )
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="output folder (default RUN/pseudo)")
    sp.add_argument("--low", type=float, default=0.2, help="sure-empty probability")
    sp.add_argument("--high", type=float, default=0.8, help="sure-salt probability")
    sp.add_argument(
        "--max-uncertain", type=float, default=0.03, help="share of pixels allowed in between"
    )
    sp.add_argument("--force", action="store_true", help="replace an existing folder")


def _predict(a: argparse.Namespace) -> None:
    from tgs.predict.test_set import predict_run

    path = predict_run(a.run, a.data, out=a.out, batch_size=a.batch_size, tta=a.tta)
    print(f"wrote {path} (manifest {path.with_suffix('.json')})")


def _blend(a: argparse.Namespace) -> None:
    from tgs.predict.blend import predict_blend, search_blend
    from tgs.run.layout import BlendPaths

    if a.runs:
        try:
            weights = [float(w) for w in a.weights.split(",")] if a.weights else None
        except ValueError as e:
            raise TGSError(f"--weights {a.weights!r}: numbers separated by commas, e.g. 2,1") from e
        th = search_blend(a.runs, a.out, data_dir=a.data, weights=weights, gate=a.gate)
        members = ", ".join(f"{c:.4f}" for c in th.members_cv)
        gate = f"gate {th.gate} {th.empty_threshold:.2f}" if th.gate else "no gate"
        print(
            f"blend CV {th.cv:.4f} (members {members}) at threshold {th.threshold:.2f}, "
            f"min-area {th.min_area}, {gate} on {th.n_images} OOF images -> "
            f"{BlendPaths(a.out).thresholds}"
        )
    if not a.no_predict:
        path = predict_blend(a.out, a.data, batch_size=a.batch_size)
        print(f"wrote {path} (manifest {path.with_suffix('.json')})")


def _pseudo(a: argparse.Namespace) -> None:
    from tgs.predict.pseudo import Confidence, make_pseudo
    from tgs.run.folder import Run

    rule = Confidence(a.low, a.high, a.max_uncertain)
    run = Run(a.run).require()
    r = make_pseudo(run, a.data, a.out, rule, force=a.force)
    out = a.out or run.paths.pseudo
    print(
        f"wrote {out}: {r.n_kept} of {r.n_test} test images ({r.n_kept_empty} empty, "
        f"{r.n_kept_salt} with salt) as pseudo-labels; train on them with pseudo={out}"
    )
