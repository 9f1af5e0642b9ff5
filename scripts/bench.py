#!/usr/bin/env python
"""tgs benchmarks. Prints a table and writes JSON; never asserts timings.

    python scripts/bench.py speed [--quick] [--out bench]
    python scripts/bench.py recipes [--configs cpu,cpu_scratch,cpu+encoder=...] [--quick]
    python scripts/bench.py threads [--quick]
    python scripts/bench.py blend RUN RUN... --data DIR [--fold 0]
    python scripts/bench.py quality --data DIR --config CFG [--fold 0] [--budget M]
        [KEY=VALUE ...]

`speed` times every hot path on this machine against a plain baseline in the same run: training
and inference images/s (seed_unet and smp Unet-resnet34 at 128 px, batch 32), predict on 18000
synthetic test images with 5 folds x hflip (wall time, peak RSS, share outside the model), the
joint threshold x min-area search on 4000 OOF maps, and RLE of 18000 masks.

`recipes` times each config's own model as it trains (size, dtype, layout, heads): training and
inference images/s on this CPU, beside each other (`NAME+KEY=VALUE` varies a shipped config: the
default adds `cpu+encoder=tu-tf_efficientnet_lite1`).

`blend` scores the average of several such runs' OOF (e.g. two architectures at half the
budget each against one at the whole budget).

`quality` runs `tgs run` on one fold of CFG on DIR (real data: `tgs prepare` first; no
submission), optionally under a wall-clock or planned budget, and prints the fold's scores: at
p > 0.5 and after the post-processing search on that fold's OOF.
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
    """One fold of CFG on DIR trained and its post-processing searched by `tgs run` itself
    (`run_pipeline`: its folds file, budget plan and search; no submission), read back from
    the run's records."""
    import shutil

    from tgs.core.config import load_config
    from tgs.pipeline.job import run_pipeline
    from tgs.pipeline.options import RunOptions

    overrides = list(a.overrides)
    if a.minutes:
        overrides.append(f"max_minutes={a.minutes}")
    if a.budget:  # the fold, its OOF and the search planned into `budget` minutes
        overrides.append(f"budget_minutes={a.budget}")
    name = a.name or load_config(a.config, overrides).name
    run_dir = Path(a.out) / "quality" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    opts = RunOptions(
        config=a.config,
        data=a.data,
        folds=[a.fold],
        run=str(run_dir),
        overrides=overrides,
        report=False,
        predict=False,
    )
    result = run_pipeline(opts)
    run = result.run
    summary, th, plan = run.summary(a.fold), run.thresholds(), run.plans.plan()
    return {
        "name": name,
        "overrides": " ".join(a.overrides),
        "fold": a.fold,
        "epochs": summary.epochs,
        "val_0.5": round(summary.best_val_score, 4),
        "oof_0.5": round(summary.oof_score, 4),
        "oof_tuned": round(th.cv, 4),
        "threshold": th.threshold,
        "min_area": th.min_area,
        "empty_threshold": th.empty_threshold,
        "gate": th.gate,
        "minutes": round(result.seconds / 60, 2),
        "plan": plan.epochs if plan else None,
        "plan_stage2": plan.stage2_epochs if plan else None,
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
    data, cfg = load_data(a.data), runs[0].config()
    result, th = search_oof(ids, probs, cls, data, a.data, cfg=cfg, gate=gate)
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


def _row(what: str, unit: str, baseline: float, tgs: float, device, *, higher_better=True) -> dict:
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
    from tgs.post.search import search_grid

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
    fast = _timed(lambda: search_grid(probs, truth))
    thresholds, areas = np.arange(100) / 100, np.arange(20) * 10
    pairs = [(t, a) for t in thresholds[::25] for a in areas[::10]]  # 8 of the 2000 pairs
    loop = _timed(lambda: [competition_score(postprocess(probs, t, a), truth) for t, a in pairs])
    base = loop * len(thresholds) * len(areas) / len(pairs)
    rows.append(
        _row(f"search 100 thr x 20 areas, {n} maps", "s", base, fast, "cpu", higher_better=False)
    )
    return rows


def _peak_rss_child(argv: list[str], answer) -> None:
    """`tgs ARGV` in this (spawned) process; puts (exit code, its own peak RSS in kB) on
    `answer`. VmHWM is this program's peak only: ru_maxrss of a forked child also counts the
    parent's pages from before exec, which would charge the benchmark's own arrays to predict."""
    import resource

    from tgs.cli.main import main

    rc = main(argv)
    try:
        with open("/proc/self/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    except OSError:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
        kb = kb // 1024 if sys.platform == "darwin" else kb
    answer.put((rc, kb))


def _in_child(target, *args):
    """`target(*args, queue)` in a fresh (spawned) Python process; what it put on the queue."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    answer = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, answer))
    proc.start()
    got = answer.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{target.__name__} failed (exit {proc.exitcode})")
    return got


def bench_predict(out: Path, quick: bool) -> list[dict]:
    """`tgs predict` on N synthetic test images with 5 folds x hflip of a tiny seed_unet, in a
    child process: wall time, peak RSS, and the share of time outside the model's forward."""
    from tgs.core.config import load_config
    from tgs.data.synth import synth
    from tgs.models.registry import model_from_config
    from tgs.run.folder import Run
    from tgs.run.records import Manifest, Thresholds

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
        save_checkpoint(run.fold(k).best, {**state, "score": 0.0, "fold": k})
    run.write(Thresholds(threshold=0.5, min_area=10, empty_threshold=0.0, blank_rule=True, cv=0.0))
    sub = out / "predict-bench.csv"
    args = ["predict", "--run", str(run.root), "--data", str(data), "--out", str(sub)]
    rc, peak_kb = _in_child(_peak_rss_child, args)
    if rc:
        raise RuntimeError(f"tgs predict exited {rc}")
    peak_mb = peak_kb / 1024
    m = Manifest.read(Manifest.path_for(sub))
    other = 1 - m.model_seconds / m.seconds
    row = {
        "benchmark": f"predict {n_test} imgs, 5 folds x hflip (seed_unet nf8 64px)",
        "unit": "s",
        "baseline": "",
        "tgs": m.seconds,
        "speedup": "",
        "device": f"peak RSS {peak_mb:.0f} MB; {100 * other:.1f}% outside model forward",
    }
    return [row]


def _throughput_child(threads: int, steps: int, size: int, layout: str, batch: int, *, ddp, answer):
    """One training-throughput process of `threads`: seed_unet 16 filters at `size` px
    (cpu_scratch.yaml's net: classifier head and deep supervision), fp32 on the CPU, channels_last
    (`layout` cl) or NCHW, on `threads` threads; puts its images/s on `answer`. `ddp`: (rank,
    world, port) of one DistributedDataParallel model (gloo; gradients all-reduced every step),
    or None."""
    import os

    import torch

    torch.set_num_threads(threads)
    from tgs.models.losses import create_loss
    from tgs.models.registry import create_model
    from tgs.train.loop import Criterion

    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    kw = {"n_filters": 16, "cls_head": True, "deep_supervision": True}
    model = create_model("seed_unet", geometry="resize", size=size, **kw).to(memory_format=fmt)
    if ddp is not None:
        import torch.distributed as dist

        rank, world, port = ddp
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    crit = Criterion(create_loss("bce+dice"), 0.2, 0.2)  # as cpu_scratch.yaml: head, deep sup.
    x = torch.randn(batch, 1, 101, 101).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, 101, 101) > 0.5).float()

    def step():
        mask, cls, aux = model(x, with_cls=True, with_aux=True)
        loss = crit(mask, cls, y, aux)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    answer.put(batch * steps / (time.perf_counter() - t0))


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
    import multiprocessing as mp
    import os

    cores, steps, rows = os.cpu_count() or 1, 6 if a.quick else 20, []
    ctx = mp.get_context("spawn")
    for i, (procs, n_threads, size, fmt, batch, ddp) in enumerate(_layouts(cores)):
        answers = [ctx.Queue() for _ in range(procs)]
        running = [
            ctx.Process(
                target=_throughput_child,
                args=(n_threads, steps, size, fmt, batch),
                kwargs={"ddp": (r, procs, 29400 + i) if ddp else None, "answer": q},
            )
            for r, q in enumerate(answers)
        ]
        for p in running:
            p.start()
        rates = [q.get() for q in answers]
        for p in running:
            p.join()
        if any(p.exitcode for p in running):
            raise RuntimeError("a throughput child failed")
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

    name, *overrides = config.split("+")  # "cpu+encoder=tu-tf_efficientnet_lite1"
    cfg = load_config(name, overrides)
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
            batches = [(x, y)] * 2
            train_one_epoch(model, batches, crit, opt, scaler, rt=rt, desc="warm-up", quiet=True)
            t0 = time.perf_counter()
            batches = [(x, y)] * steps
            train_one_epoch(model, batches, crit, opt, scaler, rt=rt, desc="timed", quiet=True)
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


def parser() -> argparse.ArgumentParser:
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
    rp.add_argument(
        "--configs",
        default="cpu,cpu+encoder=tu-tf_efficientnet_lite1,cpu_scratch",
        help="shipped names or YAML files, comma-separated; NAME+KEY=VALUE+... overrides keys",
    )
    rp.add_argument("--quick", action="store_true")
    rp.add_argument("--out", default="bench")
    sp = sub.add_parser("speed", help="time every hot path against a plain baseline")
    sp.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    sp.add_argument("--out", default="bench")
    return p


TABLES = {"threads": threads, "recipes": recipes, "speed": speed}  # -> OUT/<name>.json
ROWS = {"quality": quality, "blend": blend}  # one row each, appended to OUT/quality.jsonl


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.what in TABLES:
        rows = TABLES[a.what](a)
        (Path(a.out) / f"{a.what}.json").write_text(json.dumps(rows, indent=2) + "\n")
    else:
        rows = [ROWS[a.what](a)]
        with open(Path(a.out) / "quality.jsonl", "a") as f:
            f.write(json.dumps(rows[0]) + "\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
