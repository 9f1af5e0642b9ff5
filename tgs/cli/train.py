"""`tgs train` (one fold), `tgs threshold` (the post-processing search) and `tgs run`
(the whole job).

Handlers parse, call one library function and print. Imports that load numpy, pandas or
torch sit inside the handlers, so that `tgs --help` and `tgs config` load none of them (and
`tgs validate` no torch); the light ones are at the top.
"""

from __future__ import annotations

import argparse

from tgs.cli.common import add_command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register train, threshold and run."""
    _add_train(sub)
    _add_threshold(sub)
    _add_run(sub)


def _add_train(sub: argparse._SubParsersAction) -> None:
    sp = add_command(sub, "train", _train, "train one fold into RUN/fold{K}")
    sp.add_argument("--config", help="YAML or shipped config (default: an existing RUN's own)")
    sp.add_argument("--data", help="data folder (default: the one an existing RUN trained on)")
    sp.add_argument("--folds", help="folds CSV (default: an existing RUN's folds.csv)")
    sp.add_argument("--fold", type=int, required=True)
    sp.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        help="run folder (default runs/<config name>); under torchrun use --run-dir",
    )
    sp.add_argument("--resume", action="store_true", help="continue from RUN/fold{K}/last.pt")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def _add_threshold(sub: argparse._SubParsersAction) -> None:
    sp = add_command(sub, "threshold", _threshold, "search threshold x min-area on the run's OOF")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument(
        "--gate",
        help="what the empty gate thresholds: head, mask_max or mean (default: the config's "
        "`gate`; recorded in thresholds.json, which predict follows; `tgs run` searches with the "
        "config's)",
    )


def _add_run(sub: argparse._SubParsersAction) -> None:
    sp = add_command(
        sub, "run", _run, "the whole job: folds -> train every fold -> thresholds -> submission"
    )
    sp.add_argument(
        "--config",
        help="a YAML file or a shipped config by name (demo, cpu, cpu_folds, resnet34, ablation); "
        "default: cpu (resnet34 with CUDA)",
    )
    sp.add_argument("--data", help="default: data/, data/competition, else synthetic data")
    sp.add_argument(
        "--folds", help="comma-separated folds to train (default: the config's folds, else all)"
    )
    sp.add_argument("--run", help="run folder (default runs/<config name>)")
    sp.add_argument("--folds-csv", help="default folds/<data>-<k>f-s<seed>.csv")
    sp.add_argument("--resume", action="store_true", help="continue started folds, skip finished")
    sp.add_argument("--gpus", help="e.g. 0,1,2,3: folds in parallel waves, one per GPU")
    sp.add_argument(
        "--nproc", type=int, default=0, help="processes per fold (DDP; default: config nproc)"
    )
    sp.add_argument(
        "--jobs",
        type=int,
        help="folds trained at once, each in its own process: they share the one GPU, or split "
        "the CPU cores (default: config jobs)",
    )
    for flag in (
        "nnodes",
        "node-rank",
        "rdzv-backend",
        "rdzv-endpoint",
        "rdzv-id",
        "master-addr",
        "master-port",
    ):
        sp.add_argument(f"--{flag}", help=f"passed to torchrun as --{flag.replace('-', '_')}")
    sp.add_argument("--no-report", action="store_true", help="skip the HTML report")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def _train(a: argparse.Namespace) -> None:
    from tgs.pipeline.fold import run_train
    from tgs.pipeline.options import TrainOptions

    opts = TrainOptions(
        fold=a.fold,
        config=a.config,
        overrides=a.overrides,
        data=a.data,
        folds=a.folds,
        run=a.run,
        resume=a.resume,
    )
    s = run_train(opts)
    if s is None:  # a non-zero rank of a distributed run
        return
    print(
        f"fold {a.fold}: best val {s.best_val_score:.4f} at epoch {s.best_epoch}, "
        f"OOF ({s.tta}, p>0.5) {s.oof_score:.4f}"
    )


def _threshold(a: argparse.Namespace) -> None:
    from tgs.pipeline.stages import search_thresholds
    from tgs.run.folder import Run

    run = Run(a.run).require()
    th = search_thresholds(run, a.data, gate=a.gate)
    gate = f", empty when {th.gate} < {th.empty_threshold:.2f}" if th.empty_threshold else ""
    print(
        f"CV {th.cv:.4f} at threshold {th.threshold:.2f}, min-area {th.min_area}{gate} "
        f"(CV at 0.5: {th.cv_at_half:.4f}; all-empty: {th.all_empty:.4f}; "
        f"{th.n_images} OOF images, folds {th.folds}) -> {run.paths.thresholds}, "
        f"{run.paths.cv_plot.name}"
    )


def _run(a: argparse.Namespace) -> None:
    from tgs.pipeline.job import RunOptions, run_pipeline

    torchrun = []
    for flag in (
        "nnodes",
        "node_rank",
        "rdzv_backend",
        "rdzv_endpoint",
        "rdzv_id",
        "master_addr",
        "master_port",
    ):
        value = getattr(a, flag)
        if value is not None:
            torchrun += [f"--{flag}", str(value)]
    opts = RunOptions(
        config=a.config,
        data=a.data,
        folds=[int(k) for k in a.folds.split(",")] if a.folds else None,
        run=a.run,
        folds_csv=a.folds_csv,
        resume=a.resume,
        overrides=a.overrides,
        gpus=a.gpus.split(",") if a.gpus else [],
        jobs=a.jobs,
        nproc=a.nproc,
        torchrun=torchrun,
        report=not a.no_report,
    )
    r = run_pipeline(opts)
    line = f"== CV {r.cv:.4f} | submission {r.submission} | {r.seconds:.0f}s"
    print(line + (f" | report {r.report}" if r.report else ""))
    if r.holdout_score is not None:
        print(f"== score against the held-out truth.csv: {r.holdout_score:.4f}")
