"""DistributedDataParallel on CPU with gloo: disjoint shards, identical weights, exact metric."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, tiny_yaml
from tgs.core.config import load_config
from tgs.data.batch_aug import DeviceBatches
from tgs.data.dataset import SaltDataset
from tgs.data.folds import make_folds, save_folds
from tgs.data.io import load_train
from tgs.models.checkpoint import load_model
from tgs.models.registry import create_model
from tgs.post.metric import competition_score
from tgs.predict.inference import Runtime, predict_array
from tgs.train.distributed import Dist, has_unused_parameters
from tgs.train.loop import epoch_loader, fold_indices


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ranks_see_disjoint_shards():
    cfg = load_config(None, ["batch_size=4"])
    ds = SaltDataset(np.zeros((21, 101, 101), np.uint8), np.zeros((21, 101, 101), np.uint8))
    rt = Runtime.from_config(cfg)
    seen = []
    for rank in (0, 1):
        loader = epoch_loader(ds, cfg, 3, rt, Dist(rank, 2))
        seen.append(list(loader.sampler))
    assert not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 20  # one of 21 left out this epoch, no duplicate
    again = list(epoch_loader(ds, cfg, 3, rt, Dist(0, 2)).sampler)
    assert again == seen[0]  # set_epoch: deterministic per epoch
    assert list(epoch_loader(ds, cfg, 4, rt, Dist(0, 2)).sampler) != seen[0]
    x = torch.arange(20.0).view(20, 1, 1, 1).expand(20, 1, 101, 101).contiguous()
    shards = []
    for rank in (0, 1):
        batches = DeviceBatches(x, torch.zeros(20, 1, 101, 101), 5, None, rank=rank, world=2)
        shards.append({int(v) for b, _ in batches.epoch(7) for v in b[:, 0, 0, 0]})
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(range(20))


def test_unused_parameter_probe():
    rt = Runtime.from_config(load_config(None))
    assert not has_unused_parameters(create_model("seed_unet", cls_head=True), rt)
    assert has_unused_parameters(create_model("pspnet", encoder="resnet18"), rt)


@pytest.mark.slow  # trains or spawns processes
def test_torchrun_two_cpu_processes(synth_dir, tmp_path):
    data = load_train(synth_dir)
    folds = tmp_path / "folds.csv"
    save_folds(make_folds(data.ids, data.masks, data.z, 2, 0), folds)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(tiny_yaml(epochs=2, batch_size=4, threads=1, cls_weight=0.2))
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "tgs",
        "train",
        "--config",
        str(cfg),
        "--data",
        str(synth_dir),
        "--folds",
        str(folds),
        "--fold",
        "0",
        "--run-dir",
        str(run),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "fold0" / "summary.json").read_text())
    assert summary["ddp_world_size"] == 2 and summary["ddp_weights_identical"] is True
    # the distributed (sharded, gathered) validation equals a single-process evaluation
    model, c = load_model(run / "fold0" / "best.pt")
    import pandas as pd

    _, vi = fold_indices(data.ids, pd.read_csv(folds, dtype={"id": str}), 0)
    probs, cls = predict_array(model, data.images[vi], Runtime.from_config(c), 64, "none")
    assert cls is not None
    assert competition_score(probs > 0.5, data.masks[vi]) == summary["best_val_score"]
    assert (run / "fold0" / "oof.npz").is_file()


def test_device_batches_give_every_rank_the_same_number_of_batches():
    x = torch.zeros(255, 1, 8, 8)
    counts = [
        sum(
            1
            for _ in DeviceBatches(x, torch.zeros(255, 1, 8, 8), 64, None, rank=r, world=2).epoch(0)
        )
        for r in (0, 1)
    ]
    assert counts[0] == counts[1] == 1  # 127 each: one batch of 64; without equal shards 2 vs 1


@pytest.mark.slow  # trains or spawns processes
def test_run_nproc_from_the_config_trains_a_budgeted_fold_on_cpu_ranks(
    synth_dir, tmp_path, monkeypatch, capfd
):
    """`nproc: 2` in a config: `tgs run` trains its fold as one DDP model on 2 CPU processes,
    the cores split between them, the budget probed with 2 processes at once (each rank's
    steps halved), and the per-fold refit decided once for both ranks."""
    import pandas as pd

    from tests.helpers import TINY
    from tgs.cli.main import main

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY + "nproc: 2\nfolds: [0]\nepochs: 50\nbudget_minutes: 0.6\nlr: 0.01\n")
    run = tmp_path / "runs" / "ddp"
    args = ["run", "--config", str(cfg), "--data", str(synth_dir), "--run", str(run)]
    assert main([*args, "--no-report"]) == 0
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert f"threads: {threads}" in (run / "config.yaml").read_text()
    plan = json.loads((run / "plan.json").read_text())
    assert plan["world"] == 2 and plan["measured"]["parallel"] == 2
    summary = json.loads((run / "fold0" / "summary.json").read_text())
    assert summary["ddp_world_size"] == 2 and summary["ddp_weights_identical"] is True
    refit = json.loads((run / "fold0" / "plan.json").read_text())
    assert refit["planned_epochs"] == plan["epochs"]
    # the child's own start (imports, data, model) and its saves count against the fold's time
    assert refit["startup_seconds"] > 0 and refit["saves_timed"]
    # the per-epoch overhead is the median of the saves timed before the refit (rank 0's, whose
    # log.csv keeps each epoch's save time; the refit's own epoch was not saved yet)
    saves = pd.read_csv(run / "fold0" / "log.csv")["save_seconds"][: refit["after_epochs"] - 1]
    assert refit["overhead_seconds"] == round(float(saves.median()), 3) > 0
    assert len(pd.read_csv(run / "fold0" / "log.csv")) == refit["epochs"] == summary["epochs"]
    out = capfd.readouterr()
    assert f"fold 0: {threads} CPU threads" in out.out + out.err
