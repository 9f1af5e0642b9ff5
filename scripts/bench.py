#!/usr/bin/env python
"""tgs benchmarks. Prints a table and writes JSON; never asserts timings.

    python scripts/bench.py speed [--quick] [--out bench]
    python scripts/bench.py recipes [--configs cpu,cpu_scratch,cpu_lite1] [--quick]
    python scripts/bench.py threads [--quick]
    python scripts/bench.py blend RUN RUN... --data DIR [--fold 0]
    python scripts/bench.py quality --data DIR --config CFG [--fold 0] [--budget M]
        [KEY=VALUE ...]

`speed` times every hot path on this machine against a plain baseline in the same run: training
and inference images/s (seed_unet and smp Unet-resnet34 at 128 px, batch 32), predict on 18000
synthetic test images with 5 folds x hflip (wall time, peak RSS, share outside the model), the
joint threshold x min-area search on 4000 OOF maps, and RLE of 18000 masks.

`recipes` times each config's own model as it trains (size, dtype, layout, heads): training and
inference images/s on this CPU, beside each other.

`blend` scores the average of several such runs' OOF (e.g. two architectures at half the
budget each against one at the whole budget).

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
    from tgs.core.config import load_config
    from tgs.data.folds import load_folds, make_folds, save_folds
    from tgs.pipeline.stages import load_data, search, train_fold
    from tgs.run.folder import Run
    from tgs.train.validate import validate_config

    overrides = list(a.overrides)
    if a.minutes:
        overrides.append(f"max_minutes={a.minutes}")
    if a.budget:
        overrides.append(f"budget_minutes={a.budget}")
    cfg = load_config(a.config, overrides)
    validate_config(cfg)
    data = load_data(a.data)
    folds_csv = Path(a.out) / f"folds-{Path(a.data).name}-{cfg.n_folds}f-s{cfg.fold_seed}.csv"
    if not folds_csv.exists():
        save_folds(make_folds(data.ids, data.masks, data.z, cfg.n_folds, cfg.fold_seed), folds_csv)
    folds = load_folds(folds_csv, ids=data.ids)
    run = Run(Path(a.out) / "quality" / (a.name or cfg.name))
    if run.root.exists():
        import shutil

        shutil.rmtree(run.root)
    run.create(cfg, a.data, folds_csv)
    t0 = time.time()
    if a.budget:  # the fold, its OOF and the search planned into `budget` minutes
        from tgs.budget.probe import ensure_plan

        ensure_plan(run, cfg, data, folds, a.fold, waves=1, n_test=0, spent=0.0)
    summary = train_fold(run, cfg, data, folds, a.fold)
    search(run, a.data, data)
    th = run.thresholds()
    return {
        "name": a.name or cfg.name,
        "overrides": " ".join(a.overrides),
        "fold": a.fold,
        "epochs": summary["epochs"],
        "val_0.5": round(summary["best_val_score"], 4),
        "oof_0.5": round(summary["oof_score_0.5"], 4),
        "oof_tuned": round(th.cv, 4),
        "threshold": th.threshold,
        "min_area": th.min_area,
        "empty_threshold": th.empty_threshold,
        "gate": th.gate,
        "minutes": round((time.time() - t0) / 60, 2),
        "plan": (run.plan() or {}).get("epochs"),
        "plan_stage2": (run.plan() or {}).get("stage2_epochs"),
    }


def blend(a: argparse.Namespace) -> dict:
    """Score the average of several runs' OOF probabilities (same fold, same ids) after the
    post-processing search: what a blend of those models would score on that fold (`tgs blend`
    without files or submission; gated as the first run's thresholds were)."""
    from tgs.pipeline.stages import load_data
    from tgs.post.oof import search_oof
    from tgs.post.rule import PostProcessing
    from tgs.predict.blend import blend_oof
    from tgs.run.folder import Run

    runs = [Run(r) for r in a.runs]
    ids, probs, cls = blend_oof(runs, [1.0] * len(runs), [[a.fold]] * len(runs))
    gate = PostProcessing.from_thresholds(runs[0].thresholds()).gate
    result, th = search_oof(ids, probs, cls, load_data(a.data), a.data, runs[0].config(), gate)
    return {
        "name": a.name or "+".join(r.root.name for r in runs),
        "fold": a.fold,
        "oof_0.5": round(th.cv_at_half, 4),
        "oof_tuned": round(th.cv, 4),
        "threshold": th.threshold,
        "min_area": th.min_area,
        "empty_threshold": th.empty_threshold,
        "gate": th.gate,
    }


def _timed(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def _fast_amp(device):
    """The autocast dtype tgs trains with on `device` (Runtime's choice for `amp: true`)."""
    from tgs.core.config import load_config
    from tgs.predict.inference import Runtime

    return Runtime.from_config(load_config(None, [f"device={device}"])).amp_dtype


def _amp_label(device) -> str:
    amp = _fast_amp(device)
    return f"{device}, tgs: {str(amp).removeprefix('torch.')}" if amp else str(device)


def _train_rate(name: str, kw: dict, fast: bool, steps: int, device) -> float:
    """Images/s of training steps: `fast` = channels_last + bf16 autocast (CUDA, or a CPU with
    native bf16) with batch-level augmentation on the device; baseline = NCHW fp32 with a
    per-sample albumentations loader."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from tgs.data.batch_aug import DeviceBatches
    from tgs.data.dataset import SaltDataset, build_augment, normalize
    from tgs.models.losses import create_loss
    from tgs.models.registry import create_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 32 * (steps + 2)
    images = rng.integers(0, 255, (n, 101, 101), dtype=np.uint8)
    masks = (rng.uniform(size=(n, 101, 101)) < 0.3).astype(np.uint8)
    model = create_model(name, **kw).to(device)
    fmt = torch.channels_last if fast else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt, loss_fn = torch.optim.AdamW(model.parameters(), 1e-3), create_loss("bce+dice")
    if fast:
        x = normalize(images).to(device)
        y = torch.from_numpy(masks).float().unsqueeze(1).to(device)
        batches = DeviceBatches(x, y, 32, {"hflip": 0.5, "affine": 0.5, "brightness_contrast": 0.3})
        it = batches.epoch(0)
    else:
        ds = SaltDataset(images, masks, build_augment())
        it = iter(DataLoader(ds, batch_size=32, shuffle=True, num_workers=0))
    amp = _fast_amp(device) if fast else None

    def step():
        xb, yb = next(it)
        xb, yb = xb.to(device).contiguous(memory_format=fmt), yb.to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = loss_fn(model(xb).float(), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(), step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = _timed(lambda: [step() for _ in range(steps)])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 32 * steps / seconds


def _infer_rate(name: str, kw: dict, fast: bool, steps: int, device) -> float:
    import torch

    from tgs.models.registry import create_model

    fmt = torch.channels_last if fast else torch.contiguous_format
    model = create_model(name, **kw).to(device).to(memory_format=fmt).eval()
    x = torch.randn(32, 1, 101, 101, device=device).contiguous(memory_format=fmt)
    amp = _fast_amp(device) if fast else None
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        model(x)
        seconds = _timed(lambda: model(x), steps)
    return 32 / seconds


def bench_models(quick: bool) -> list[dict]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps = 2 if quick else 4
    rows, label_dev = [], _amp_label(device)
    for name, kw in [("seed_unet", {}), ("unet", {"encoder": "resnet34"})]:
        label = "seed_unet" if name == "seed_unet" else "unet-resnet34"
        base, fast = (_train_rate(name, kw, f, steps, device) for f in (False, True))
        rows.append(_row(f"train {label} 128px b32", "img/s", base, fast, label_dev))
        base, fast = (_infer_rate(name, kw, f, steps, device) for f in (False, True))
        rows.append(_row(f"infer {label} 128px b32", "img/s", base, fast, label_dev))
    return rows


def _row(what: str, unit: str, baseline: float, tgs: float, device, higher_better=True) -> dict:
    ratio = tgs / baseline if higher_better else baseline / tgs
    return {
        "benchmark": what,
        "unit": unit,
        "baseline": round(baseline, 3),
        "tgs": round(tgs, 3),
        "speedup": round(ratio, 2),
        "device": str(device),
    }


def bench_cpu_paths(quick: bool) -> list[dict]:
    """RLE of 18000 masks and the threshold search on 4000 maps, each against a plain loop."""
    import numpy as np

    from tgs.data import rle
    from tgs.post.metric import competition_score
    from tgs.post.rule import postprocess
    from tgs.post.search import search

    rng = np.random.default_rng(0)
    masks = np.zeros((18000, 101, 101), np.uint8)
    tops = rng.integers(0, 101, 18000)
    for i in range(0, 18000, 2):
        masks[i, tops[i] :, : rng.integers(1, 101)] = 1
    vec = min(_timed(lambda: rle.decode_batch(rle.encode_batch(masks))) for _ in range(3))
    sub = 3000  # the plain per-mask functions are timed on a subset and scaled

    def loop_rle():  # the usual Kaggle-kernel rle_encode / rle_decode, one mask at a time
        texts = []
        for m in masks[:sub]:
            px = np.concatenate([[0], m.flatten(order="F"), [0]])
            runs = np.where(px[1:] != px[:-1])[0] + 1
            runs[1::2] -= runs[::2]
            texts.append(" ".join(str(r) for r in runs))
        out = []
        for text in texts:
            v = text.split()
            starts, lengths = (np.asarray(x, dtype=int) for x in (v[0::2], v[1::2]))
            img = np.zeros(101 * 101, np.uint8)
            for lo, hi in zip(starts - 1, starts - 1 + lengths, strict=True):
                img[lo:hi] = 1
            out.append(img.reshape((101, 101), order="F"))
        return np.stack(out)

    base = min(_timed(loop_rle) for _ in range(3)) * len(masks) / sub
    rows = [_row("RLE encode+decode 18000 masks", "s", base, vec, "cpu", higher_better=False)]

    n = 1000 if quick else 4000
    truth = masks[:n]
    probs = np.clip(truth * 0.7 + rng.uniform(0, 0.5, truth.shape), 0, 1).astype(np.float16)
    fast = _timed(lambda: search(probs, truth))
    thresholds, areas = np.arange(100) / 100, np.arange(20) * 10
    pairs = [(t, a) for t in thresholds[::25] for a in areas[::10]]  # 8 of the 2000 pairs
    loop = _timed(lambda: [competition_score(postprocess(probs, t, a), truth) for t, a in pairs])
    base = loop * len(thresholds) * len(areas) / len(pairs)
    rows.append(_row(f"search 100 thr x 20 areas, {n} maps", "s", base, fast, "cpu", False))
    return rows


# Runs `python -m tgs ARGS` and prints the process's own peak RSS (kB) last on stderr. VmHWM is
# the peak of this program's memory only: ru_maxrss of a child also counts the forked parent's
# pages from before exec, which would charge the benchmark's own arrays to predict.
_PEAK_RSS_CHILD = """
import resource, sys
from tgs.cli.main import main
rc = main(sys.argv[1:])
try:
    kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
except OSError:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    kb = kb // 1024 if sys.platform == "darwin" else kb
print("peak_rss_kb", kb, file=sys.stderr)
sys.exit(rc)
"""


def bench_predict(out: Path, quick: bool) -> list[dict]:
    """`tgs predict` on N synthetic test images with 5 folds x hflip of a tiny seed_unet, in a
    child process: wall time, peak RSS, and the share of time outside the model's forward."""
    import subprocess

    from tgs.core.config import load_config
    from tgs.data.synth import synth
    from tgs.models.registry import model_from_config
    from tgs.run.folder import Run

    n_test = 2000 if quick else 18000
    data = out / f"predict-data-{n_test}"
    if not data.exists():
        synth(data, n_train=50, n_test=n_test, seed=0)
    cfg = load_config(
        None,
        ["name=bench", "model_kwargs.n_filters=8", "geometry=resize", "size=64", "blank_rule=true"],
    )
    import shutil

    shutil.rmtree(out / "predict-run", ignore_errors=True)
    run = Run(out / "predict-run").create(cfg, data)
    from tgs.models.checkpoint import save_checkpoint

    for k in range(5):
        state = {"model": model_from_config(cfg).state_dict(), "config": cfg.to_dict(), "epoch": 0}
        save_checkpoint(run.best(k), {**state, "score": 0.0, "fold": k})
    run.write_thresholds(
        {"threshold": 0.5, "min_area": 10, "empty_threshold": 0.0, "blank_rule": True, "cv": 0.0}
    )
    sub = out / "predict-bench.csv"
    args = ["predict", "--run", str(run.root), "--data", str(data), "--out", str(sub)]
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_CHILD, *args], cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    peak_mb = int(proc.stderr.strip().splitlines()[-1].split()[-1]) / 1024
    m = json.loads(sub.with_suffix(".json").read_text())
    other = 1 - m["model_seconds"] / m["seconds"]
    row = {
        "benchmark": f"predict {n_test} imgs, 5 folds x hflip (seed_unet nf8 64px)",
        "unit": "s",
        "baseline": "",
        "tgs": m["seconds"],
        "speedup": "",
        "device": f"peak RSS {peak_mb:.0f} MB; {100 * other:.1f}% outside model forward",
    }
    return [row]


# One training-throughput child of `threads`: seed_unet 16 filters at SIZE px (configs/cpu.yaml's
# net, classifier head and deep supervision), fp32 on the CPU, channels_last or NCHW; writes its
# images/s to the JSON file. With WORLD > 1 it is one rank of a DistributedDataParallel model
# (gloo; gradients all-reduced every step).
# argv: threads, steps, out.json, size, layout (cl | nchw), batch, rank, world, port
_THREADS_CHILD = """
import json, os, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from tgs.losses import create_loss
from tgs.models import create_model
from tgs.train import Criterion
torch.manual_seed(0)
batch, rank, world = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
fmt = torch.channels_last if sys.argv[5] == "cl" else torch.contiguous_format
m = create_model(
    "seed_unet", geometry="resize", size=int(sys.argv[4]), n_filters=16, cls_head=True,
    deep_supervision=True,
)
m = m.to(memory_format=fmt)
if world > 1:
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[9])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    m = torch.nn.parallel.DistributedDataParallel(m)
opt = torch.optim.AdamW(m.parameters(), 1e-3)
crit = Criterion(create_loss("bce+dice"), 0.2, 0.2)  # as configs/cpu.yaml: cls head, deep sup.
x = torch.randn(batch, 1, 101, 101).contiguous(memory_format=fmt)
y = (torch.rand(batch, 1, 101, 101) > 0.5).float()
def step():
    mask, cls, aux = m(x, with_cls=True, with_aux=True)
    loss = crit(mask, cls, y, aux)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(3):
    step()
t0 = time.perf_counter()
for _ in range(int(sys.argv[2])):
    step()
rate = batch * int(sys.argv[2]) / (time.perf_counter() - t0)
json.dump({"img_s": rate}, open(sys.argv[3], "w"))
"""


def _layouts(cores: int) -> list[tuple]:
    """(processes, threads each, px, memory layout, batch per process, one DDP model?)"""
    rows = [(1, cores, 64, "cl", 32, False), (1, 1, 64, "cl", 32, False)]
    rows += [(n, 1, 64, "cl", 32, False) for n in range(2, cores + 2)]
    rows += [(1, 1, 64, "nchw", 32, False), (1, 1, 48, "cl", 32, False)]
    rows += [(1, 1, 48, "nchw", 32, False), (1, cores, 48, "cl", 32, False)]
    if cores > 1:  # one model of batch 32 on every core: DDP ranks of batch 32 / cores
        rows += [(cores, 1, px, "cl", max(1, 32 // cores), True) for px in (48, 64)]
    return rows


def threads(a: argparse.Namespace) -> list[dict]:
    """Training images/s (fp32) of one process on all threads against several 1-thread
    processes at once (folds in parallel, `jobs`) and against one DDP model with a 1-thread rank
    per core (`tgs run --nproc`, global batch 32), then one thread at 64 and 48 px (progressive
    resizing's low size) in channels_last and NCHW layouts, on this CPU."""
    import os
    import subprocess
    import tempfile

    cores, steps, rows = os.cpu_count() or 1, 6 if a.quick else 20, []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i, (procs, n_threads, size, fmt, batch, ddp) in enumerate(_layouts(cores)):
        with tempfile.TemporaryDirectory() as tmp:
            outs = [Path(tmp) / f"{r}.json" for r in range(procs)]
            cmd = [sys.executable, "-c", _THREADS_CHILD, str(n_threads), str(steps)]
            world = procs if ddp else 1
            running = [
                subprocess.Popen(
                    [*cmd, str(o), str(size), fmt, str(batch), str(r if ddp else 0), str(world)]
                    + [str(29400 + i)],
                    env=env,
                )
                for r, o in enumerate(outs)
            ]
            if any(p.wait() for p in running):
                raise RuntimeError("a throughput child failed")
            rates = [json.loads(o.read_text())["img_s"] for o in outs]
        what = "DDP ranks (one model)" if ddp else "proc"
        rows.append(
            {
                "benchmark": f"train seed_unet {size}px {fmt} b{batch}: {procs} {what} x "
                f"{n_threads} thread",
                "unit": "img/s",
                "baseline": "",
                "tgs": round(sum(rates), 1),
                "speedup": "",
                "device": f"{cores} cores; per process " + ", ".join(f"{r:.1f}" for r in rates),
            }
        )
    return rows


def recipe_rates(config: str, steps: int) -> dict:
    """Training and inference images/s of a config's own model, size, dtype and memory layout
    (its classifier head and deep supervision too), on batches of random 101x101 inputs: the
    training step is tgs's (`train_one_epoch` with the config's loss and optimizer), inference
    one forward pass of a validation batch (no TTA)."""
    import torch

    from tgs.core.config import load_config
    from tgs.core.meta import cpu_name
    from tgs.models.losses import create_loss
    from tgs.models.registry import model_from_config
    from tgs.predict.inference import Runtime
    from tgs.train.loop import Criterion, train_one_epoch, train_size
    from tgs.train.schedule import build_optimizer

    cfg = load_config(config)
    torch.manual_seed(0)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rt = Runtime.from_config(cfg)
    model = model_from_config(cfg, pretrained=False).to(rt.device, memory_format=rt.memory_format)
    opt, scaler = build_optimizer(cfg, model), torch.amp.GradScaler(enabled=False)
    crit = Criterion(create_loss(cfg.loss), cfg.cls_weight, cfg.aux_weight)
    x = torch.randn(cfg.batch_size, 1, 101, 101)
    y = (torch.rand(cfg.batch_size, 1, 101, 101) > 0.6).float()
    rows = {}
    sizes = [("full", 0)] + ([("low", cfg.low_size)] if cfg.low_size else [])
    for what, size in sizes:
        with train_size(model, size):
            train_one_epoch(model, [(x, y)] * 2, crit, opt, scaler, rt, "warm-up", quiet=True)
            t0 = time.perf_counter()
            train_one_epoch(model, [(x, y)] * steps, crit, opt, scaler, rt, "timed", quiet=True)
            rows[what] = cfg.batch_size * steps / (time.perf_counter() - t0)
    model.eval()
    xv = rt.to_input(torch.randn(cfg.val_batch_size, 1, 101, 101))
    with torch.inference_mode(), rt.autocast():
        model(xv)
        infer = cfg.val_batch_size / _timed(lambda: model(xv), max(2, steps // 2))
    size = "101 native" if cfg.geometry == "none" else f"{cfg.geometry} {cfg.size}"
    return {
        "recipe": config,
        "model": cfg.model if cfg.model == "seed_unet" else f"{cfg.model}-{cfg.encoder}",
        "input": size + (f" (first {cfg.low_share:.0%} at {cfg.low_size})" if cfg.low_size else ""),
        "dtype": str(rt.amp_dtype or "float32").removeprefix("torch."),
        "train img/s": round(rows["full"], 1),
        "train img/s, low size": round(rows["low"], 1) if "low" in rows else "",
        "infer img/s": round(infer, 1),
        "cpu": f"{cpu_name()} x {torch.get_num_threads()} threads",
    }


def recipes(a: argparse.Namespace) -> list[dict]:
    return [recipe_rates(c, 4 if a.quick else 12) for c in a.configs.split(",")]


def speed(a: argparse.Namespace) -> list[dict]:
    out = Path(a.out)
    rows = bench_cpu_paths(a.quick) + bench_models(a.quick) + bench_predict(out, a.quick)
    return rows


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
    q.add_argument("--config", default="cpu")
    q.add_argument("--fold", type=int, default=0)
    q.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget for the fold")
    q.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="minutes for the fold's training, OOF and search, planned as budget_minutes does",
    )
    q.add_argument("--name", help="row name (default: the config's name)")
    q.add_argument("--out", default="bench")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    bp = sub.add_parser("blend", help="score the average of bench runs' OOF on one fold")
    bp.add_argument("runs", nargs="+", help="run folders (e.g. bench/quality/NAME)")
    bp.add_argument("--data", required=True)
    bp.add_argument("--fold", type=int, default=0)
    bp.add_argument("--name")
    bp.add_argument("--out", default="bench")
    tp = sub.add_parser("threads", help="images/s: one process on all cores vs 1-thread ones")
    tp.add_argument("--quick", action="store_true")
    tp.add_argument("--out", default="bench")
    rp = sub.add_parser("recipes", help="train/infer images/s of shipped configs' models")
    rp.add_argument("--configs", default="cpu,cpu_scratch,cpu_lite1")
    rp.add_argument("--quick", action="store_true")
    rp.add_argument("--out", default="bench")
    sp = sub.add_parser("speed", help="time every hot path against a plain baseline")
    sp.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    sp.add_argument("--out", default="bench")
    a = p.parse_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.what == "threads":
        rows = threads(a)
        (Path(a.out) / "threads.json").write_text(json.dumps(rows, indent=2) + "\n")
        print_table(rows)
        return 0
    if a.what == "recipes":
        rows = recipes(a)
        (Path(a.out) / "recipes.json").write_text(json.dumps(rows, indent=2) + "\n")
        print_table(rows)
        return 0
    if a.what == "speed":
        rows = speed(a)
        (Path(a.out) / "speed.json").write_text(json.dumps(rows, indent=2) + "\n")
        print_table(rows)
        return 0
    row = quality(a) if a.what == "quality" else blend(a)
    with open(Path(a.out) / "quality.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print_table([row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
