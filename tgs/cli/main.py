"""`python -m tgs <command>`: argument parsing only; the work lives in the modules."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tgs.core.errors import TGSError


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
    from tgs.data.cache import load_train_cached
    from tgs.data.folds import make_folds, save_folds

    data = load_train_cached(a.data)  # reports ids without a depth
    df = make_folds(data.ids, data.masks, data.z, a.n_folds, a.seed)
    save_folds(df, a.out)
    sizes = df["fold"].value_counts().sort_index().tolist()
    print(f"wrote {a.out}: {len(df)} ids in {a.n_folds} folds of sizes {sizes}")


def _validate(a: argparse.Namespace) -> None:
    from tgs.predict.submission import validate_file

    n = validate_file(a.submission, a.sample)
    print(f"OK: {a.submission} has {n} rows matching {a.sample}, all RLEs legal")


def _score(a: argparse.Namespace) -> None:
    from tgs.predict.submission import score_file

    score, n = score_file(a.submission, a.truth)
    print(f"{score:.4f}  ({n} images, {a.submission} vs {a.truth})")


def _config(a: argparse.Namespace) -> None:
    from tgs.core.config import dump_config, load_config

    cfg = load_config(a.config, a.overrides)
    if a.get:
        value = cfg.to_dict().get(a.get)
        if a.get not in cfg.to_dict():
            raise TGSError(f"unknown config key {a.get!r}")
        print(",".join(map(str, value)) if isinstance(value, list) else value)
    else:
        print(dump_config(cfg), end="")


def _fold_started() -> float:
    """When this fold's work began: when `tgs run` launched this process (its interpreter,
    imports and data count toward the fold's budget), else now (a `tgs train` of its own: its
    probe is already out of the plan)."""
    from tgs.pipeline.launch import FOLD_LAUNCHED

    launched = os.environ.get(FOLD_LAUNCHED)
    return float(launched) if launched else time.time()


def _train(a: argparse.Namespace) -> None:
    from tgs.core.config import load_config
    from tgs.data.folds import load_folds
    from tgs.pipeline.stages import load_data, train_fold
    from tgs.run.folder import Run
    from tgs.train.distributed import init_distributed, shutdown_distributed
    from tgs.train.validate import validate_config

    cfg = load_config(a.config, a.overrides)
    validate_config(cfg)
    run = Run(a.run or Run.default_root(cfg))
    data = load_data(a.data)
    folds = load_folds(a.folds, ids=data.ids)
    if a.fold not in set(folds["fold"]):
        raise TGSError(f"fold {a.fold} is not in {a.folds} (folds: {sorted(set(folds['fold']))})")
    dist = init_distributed()
    try:
        if dist.main:  # under torchrun only rank 0 writes the run files
            run.create(cfg, a.data, a.folds)
        if cfg.budget_minutes and not dist.enabled:  # `tgs run` plans before the folds
            from tgs.budget.probe import ensure_plan
            from tgs.data.io import test_ids

            n = len(cfg.folds or range(cfg.n_folds))
            ensure_plan(run, cfg, data, folds, a.fold, n, len(test_ids(a.data)), 0.0)
        summary = train_fold(run, cfg, data, folds, a.fold, a.resume, dist, _fold_started())
    finally:
        shutdown_distributed(dist)
    if not summary:  # a non-zero rank of a distributed run
        return
    print(
        f"fold {a.fold}: best val {summary['best_val_score']:.4f} at epoch "
        f"{summary['best_epoch']}, OOF ({summary['tta']}, p>0.5) {summary['oof_score_0.5']:.4f}"
    )


def _threshold(a: argparse.Namespace) -> None:
    from tgs.pipeline.stages import search
    from tgs.run.folder import Run

    run = Run(a.run).require()
    r = search(run, a.data, gate=a.gate)
    gate = f", empty when {r['gate']} < {r['empty_threshold']:.2f}" if r["empty_threshold"] else ""
    print(
        f"CV {r['cv']:.4f} at threshold {r['threshold']:.2f}, min-area {r['min_area']}{gate} "
        f"(CV at 0.5: {r['cv_at_0.5']:.4f}; all-empty: {r['all_empty']:.4f}; "
        f"{r['n_images']} OOF images, folds {r['folds']}) -> {run.thresholds_path}, "
        f"{run.cv_plot_path.name}"
    )


def _predict(a: argparse.Namespace) -> None:
    from tgs.predict.test_set import predict_run

    path = predict_run(a.run, a.data, a.out, a.batch_size, a.tta)
    print(f"wrote {path} (manifest {path.with_suffix('.json')})")


def _blend(a: argparse.Namespace) -> None:
    from tgs.predict.blend import predict_blend, search_blend

    if a.runs:
        try:
            weights = [float(w) for w in a.weights.split(",")] if a.weights else None
        except ValueError as e:
            raise TGSError(f"--weights {a.weights!r}: numbers separated by commas, e.g. 2,1") from e
        r = search_blend(a.runs, a.out, a.data, weights, a.gate)
        members = ", ".join(f"{c:.4f}" for c in r["members_cv"])
        gate = f"gate {r['gate']} {r['empty_threshold']:.2f}" if r["gate"] else "no gate"
        print(
            f"blend CV {r['cv']:.4f} (members {members}) at threshold {r['threshold']:.2f}, "
            f"min-area {r['min_area']}, {gate} on {r['n_images']} OOF images -> "
            f"{a.out}/thresholds.json"
        )
    if not a.no_predict:
        path = predict_blend(a.out, a.data, a.batch_size)
        print(f"wrote {path} (manifest {path.with_suffix('.json')})")


def _report(a: argparse.Namespace) -> None:
    from tgs.report import build_report
    from tgs.run.folder import Run

    print(build_report(Run(a.run), a.data, a.out))


def _pseudo(a: argparse.Namespace) -> None:
    from tgs.predict.pseudo import Confidence, make_pseudo
    from tgs.run.folder import Run

    rule = Confidence(a.low, a.high, a.max_uncertain)
    run = Run(a.run).require()
    r = make_pseudo(run, a.data, a.out, rule, force=a.force)
    out = a.out or run.pseudo_dir
    print(
        f"wrote {out}: {r['n_kept']} of {r['n_test']} test images ({r['n_kept_empty']} empty, "
        f"{r['n_kept_salt']} with salt) as pseudo-labels; train on them with pseudo={out}"
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


def _sample_for(submission: Path, sample: str | None) -> Path:
    """sample_submission.csv for validating `submission`: --sample, else its manifest's data,
    else data/ or data/competition."""
    from tgs.kaggle.competition import find_sample

    return find_sample(submission, sample)


def _kaggle(a: argparse.Namespace) -> None:
    from tgs.kaggle import client as kaggle_cli

    kaggle_cli.set_timeout(a.timeout)
    try:
        _kaggle_command(a)
    finally:
        kaggle_cli.set_timeout(None)


def _kaggle_command(a: argparse.Namespace) -> None:
    import shlex

    from tgs.kaggle import competition as kaggle
    from tgs.kaggle import kernels as kaggle_kernel

    cmd = a.kaggle_command
    if cmd == "download":
        print(f"downloaded and prepared {kaggle.download(a.out, force=a.force)}")
    elif cmd == "submit":
        path = Path(a.file)
        sample = _sample_for(path, a.sample)
        rec = kaggle.submit(path, a.message, sample, a.wait, a.poll, a.max_wait)
        scores = f" public {rec.get('public')} private {rec.get('private')}" if a.wait else ""
        manifest = path.with_suffix(".json")
        print(f"submitted {path} ({rec['status']}){scores}; recorded in {manifest}")
    elif cmd == "submissions":
        import pandas as pd

        table = kaggle.submissions_table(a.dir)
        with pd.option_context("display.width", 200, "display.max_colwidth", 40):
            print(table.to_string(index=False) if len(table) else "no submissions yet")
    elif cmd == "push-kernel":
        run = a.run or a.run_opt
        if not run:
            raise TGSError("push-kernel needs the run folder: python -m tgs kaggle push-kernel RUN")
        p = kaggle_kernel.push_kernel(
            run, a.user, a.dataset, a.title, a.gpu, a.dry_run, a.message, a.staging, a.max_wait
        )
        if a.dry_run:
            from tgs.kaggle.client import shell_command

            status, create, version, push = (shell_command(c) for c in p.commands)
            print(f"# dry run: staged {p.staged}/dataset and {p.staged}/kernel; called nothing.")
            print("# the commands push-kernel runs (paste them to push by hand):")
            print(f"{status}\n{create}  # a new dataset\n{version}  # an existing one")
            print(f"{push}  # once `{status}` says ready")
            return
        print(f"dataset {p.dataset_ref} is ready; kernel {p.kernel_ref} pushed: {p.kernel_url}")
        print(f"follow it: python -m tgs kaggle kernel-status {shlex.quote(run)} --wait")
    elif cmd in ("kernel-status", "kernel-output"):
        ref = kaggle_kernel.kernel_ref(a.run, a.kernel, a.user, a.title, a.staging)
        if cmd == "kernel-status":
            status = kaggle_kernel.kernel_status(ref, a.wait, a.poll, a.max_wait)
            print(f"kernel {ref}: {status}")
            if status == "complete":
                print(f"next: python -m tgs kaggle kernel-output {shlex.quote(a.run)}")
            return
        path = kaggle_kernel.kernel_output(a.run, ref, a.sample, a.dir, a.staging)
        print(f"wrote {path} (valid; manifest {path.with_suffix('.json')}) from kernel {ref}")
        print("next: python -m tgs kaggle submit " + shlex.join([str(path), "-m", ref]))


def _add_kaggle(sub) -> None:
    sp = sub.add_parser("kaggle", help="Kaggle round trip: download, submit, submissions, kernels")
    sp.set_defaults(fn=_kaggle)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout",
        type=float,
        help="seconds without an answer before a kaggle call counts as a network failure "
        "(default $TGS_KAGGLE_TIMEOUT or 300)",
    )
    ks = sp.add_subparsers(dest="kaggle_command", required=True, metavar="KAGGLE_COMMAND")

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        return ks.add_parser(name, help=help, parents=[common])

    def waits(k: argparse.ArgumentParser, poll: float, max_wait: float) -> None:
        k.add_argument("--poll", type=float, default=poll, help="first wait between polls (s)")
        k.add_argument("--max-wait", type=float, default=max_wait, help="give up after (s)")

    def kernel_of(k: argparse.ArgumentParser) -> None:
        k.add_argument("run", help="run folder")
        k.add_argument("--kernel", help="OWNER/SLUG (default: the kernel push-kernel made)")
        k.add_argument("--user", help="Kaggle username (default: from the credentials)")
        k.add_argument("--title", help="kernel title given to push-kernel")
        k.add_argument("--staging", default="build/kaggle", help="push-kernel's staging folder")

    k = cmd("download", "download the competition data and unpack it")
    k.add_argument("--out", default="data/competition")
    k.add_argument("--force", action="store_true")
    k = cmd("submit", "validate, then submit a CSV (with --wait: record scores)")
    k.add_argument("file")
    k.add_argument("-m", "--message", required=True)
    k.add_argument("--wait", action="store_true", help="poll (with backoff) until scored")
    waits(k, 30.0, 3600.0)
    k.add_argument("--sample", help="sample_submission.csv (default: manifest's data, data/)")
    k = cmd("submissions", "Kaggle submissions joined with local manifests")
    k.add_argument("--dir", default="submissions")
    k = cmd("push-kernel", "stage RUN as a dataset + offline inference kernel and push both")
    k.add_argument("run", nargs="?", help="run folder")
    k.add_argument("--run", dest="run_opt", help=argparse.SUPPRESS)
    k.add_argument("--user", help="Kaggle username (default: from the credentials)")
    k.add_argument("--dataset", help="dataset slug (default tgs-<run>-weights, cut to 50)")
    k.add_argument("--title", help="kernel title (default 'tgs inference <run>', cut to 50)")
    k.add_argument("--gpu", action="store_true", help="enable the GPU in the kernel")
    k.add_argument("-m", "--message", default="tgs push-kernel", help="dataset version notes")
    k.add_argument("--dry-run", action="store_true", help="stage only; print the commands")
    k.add_argument("--staging", default="build/kaggle")
    k.add_argument("--max-wait", type=float, default=1800.0, help="for the dataset to be ready")
    k = cmd("kernel-status", "status of RUN's kernel (with --wait: until it finishes)")
    kernel_of(k)
    k.add_argument("--wait", action="store_true", help="poll (with backoff) until finished")
    waits(k, 30.0, 7200.0)
    k = cmd("kernel-output", "fetch RUN's kernel submission.csv, validate it, write a manifest")
    kernel_of(k)
    k.add_argument("--sample", help="sample_submission.csv (default: the run's data, data/)")
    k.add_argument("--dir", default="submissions", help="where the submission goes")


def _add_run(cmd) -> None:
    sp = cmd("run", _run, "the whole job: folds -> train every fold -> thresholds -> submission")
    sp.add_argument(
        "--config",
        help="a YAML file or a shipped config by name (demo, cpu, cpu_folds, resnet34, ablation); "
        "default: cpu (resnet34 with CUDA)",
    )
    sp.add_argument("--data", help="default: data/, data/competition, else synthetic data")
    sp.add_argument("--folds", help="comma-separated folds to train (default: all)")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tgs",
        description="TGS Salt toolkit: data -> folds -> train -> thresholds -> submission.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    sp = cmd("prepare", _prepare, "unpack the competition zip into a data folder")
    sp.add_argument("zip")
    sp.add_argument("--out", required=True)
    sp.add_argument("--force", action="store_true", help="replace an existing folder")

    sp = cmd("synth", _synth, "write synthetic data in the competition layout")
    sp.add_argument("--out", required=True)
    sp.add_argument("--n-train", type=int, default=800)
    sp.add_argument("--n-test", type=int, default=400)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true")

    sp = cmd("holdout", _holdout, "split a data folder's train set into train + scored holdout")
    sp.add_argument("--data", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--frac", type=float, default=0.2)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--force", action="store_true")

    sp = cmd("folds", _folds, "coverage-stratified k folds -> CSV")
    sp.add_argument("--data", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--n-folds", type=int, default=5)
    sp.add_argument("--seed", type=int, default=42)

    sp = cmd("validate", _validate, "check a submission CSV as Kaggle would")
    sp.add_argument("submission")
    sp.add_argument("--sample", required=True, help="sample_submission.csv")

    sp = cmd("score", _score, "competition score of a submission against a truth CSV")
    sp.add_argument("submission")
    sp.add_argument("--truth", required=True, help="CSV in train.csv format")

    sp = cmd("config", _config, "print the resolved config (YAML + key=value overrides)")
    sp.add_argument("--config")
    sp.add_argument("--get", help="print one key's value")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    sp = cmd("train", _train, "train one fold into RUN/fold{K}")
    sp.add_argument("--config")
    sp.add_argument("--data", required=True)
    sp.add_argument("--folds", required=True, help="folds CSV")
    sp.add_argument("--fold", type=int, required=True)
    sp.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        help="run folder (default runs/<config name>); under torchrun use --run-dir",
    )
    sp.add_argument("--resume", action="store_true", help="continue from RUN/fold{K}/last.pt")
    sp.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    sp = cmd("threshold", _threshold, "search threshold x min-area on the run's OOF")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument(
        "--gate",
        help="what the empty gate thresholds: head, mask_max or mean (default: the config's "
        "`gate`; recorded in thresholds.json, which predict follows; `tgs run` searches with the "
        "config's)",
    )

    sp = cmd("predict", _predict, "fold ensemble x TTA on the test set -> submission")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="submission path (default submissions/<run>-cv<CV>.csv)")
    sp.add_argument("--batch-size", type=int, default=256)
    sp.add_argument("--tta", help="TTA views (default: the one the thresholds were searched with)")
    sp = cmd("blend", _blend, "average finished runs (same folds) -> search -> one submission")
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
    sp = cmd("report", _report, "static HTML report of a run (finished or partial)")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="output folder (default RUN/report)")
    _add_run(cmd)
    sp = cmd("pseudo", _pseudo, "confident test predictions of RUN -> an extra training set")
    sp.add_argument("--run", required=True)
    sp.add_argument("--data", help="data folder (default: the one the run trained on)")
    sp.add_argument("--out", help="output folder (default RUN/pseudo)")
    sp.add_argument("--low", type=float, default=0.2, help="sure-empty probability")
    sp.add_argument("--high", type=float, default=0.8, help="sure-salt probability")
    sp.add_argument(
        "--max-uncertain", type=float, default=0.03, help="share of pixels allowed in between"
    )
    sp.add_argument("--force", action="store_true", help="replace an existing folder")
    _add_kaggle(sub)
    return p


def setup_logging() -> None:
    """tgs's library messages (logging) as plain lines on stdout, once per process."""
    import logging

    logger = logging.getLogger("tgs")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; KEY=VALUE overrides may come before, between or after the options
    (`run budget_minutes=5 --jobs 2 seed=1`), not only in one block."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    setup_logging()
    args = parse_args(argv)
    try:
        args.fn(args)
    except TGSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
