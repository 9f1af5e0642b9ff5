#!/usr/bin/env python
"""tgs benchmarks. Prints a table and writes JSON; never asserts timings.

    python scripts/bench.py quality --data DIR --config CFG [--fold 0] [--minutes M] [KEY=VALUE ...]

`quality` trains one fold of CFG on DIR (real data: `python -m tgs prepare` first) under a
wall-clock budget, searches post-processing on that fold's OOF, and prints its competition score.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def quality(a: argparse.Namespace) -> dict:
    from tgs.config import load_config
    from tgs.data.io import load_train
    from tgs.evaluate import threshold_run
    from tgs.folds import load_folds, make_folds, save_folds
    from tgs.train import prepare_run_dir, validate_config
    from tgs.trainer import fit

    overrides = list(a.overrides)
    if a.minutes:
        overrides.append(f"max_minutes={a.minutes}")
    cfg = load_config(a.config, overrides)
    validate_config(cfg)
    data = load_train(a.data)
    folds_csv = Path(a.out) / f"folds-{Path(a.data).name}-{cfg.n_folds}f-s{cfg.fold_seed}.csv"
    if not folds_csv.exists():
        save_folds(make_folds(data.ids, data.masks, data.z, cfg.n_folds, cfg.fold_seed), folds_csv)
    folds = load_folds(folds_csv, ids=data.ids)
    run = Path(a.out) / "quality" / (a.name or cfg.name)
    if run.exists():
        import shutil

        shutil.rmtree(run)
    prepare_run_dir(run, cfg, {"data": str(Path(a.data).resolve()), "folds": str(folds_csv)})
    t0 = time.time()
    summary = fit(cfg, data, folds, a.fold, run)
    th = threshold_run(run, a.data)
    return {
        "name": a.name or cfg.name,
        "overrides": " ".join(a.overrides),
        "fold": a.fold,
        "epochs": len((run / f"fold{a.fold}" / "log.csv").read_text().splitlines()) - 1,
        "val_0.5": round(summary["best_val_score"], 4),
        "oof_hflip_0.5": round(summary["oof_score_hflip_0.5"], 4),
        "oof_tuned": round(th["cv"], 4),
        "threshold": th["threshold"],
        "min_area": th["min_area"],
        "empty_threshold": th["empty_threshold"],
        "minutes": round((time.time() - t0) / 60, 2),
    }


def print_table(rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    print(" | ".join(k.ljust(widths[k]) for k in keys))
    print("-|-".join("-" * widths[k] for k in keys))
    for r in rows:
        print(" | ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality", help="train one fold on real data under a budget; print score")
    q.add_argument("--data", required=True)
    q.add_argument("--config", default=str(ROOT / "configs" / "cpu.yaml"))
    q.add_argument("--fold", type=int, default=0)
    q.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget for the fold")
    q.add_argument("--name", help="row name (default: the config's name)")
    q.add_argument("--out", default="bench")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    a = p.parse_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    row = quality(a)
    with open(Path(a.out) / "quality.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print_table([row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
