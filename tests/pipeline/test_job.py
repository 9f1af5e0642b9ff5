"""A short end-to-end run: folds -> 2 folds x 1 epoch -> threshold -> predict -> valid CSV."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.helpers import ROOT, TINY, train_args
from tgs.cli.main import main
from tgs.data import rle
from tgs.data.io import read_image, read_rle_csv
from tgs.pipeline.stages import load_data
from tgs.post.metric import competition_score
from tgs.post.rule import is_blank, postprocess
from tgs.predict.inference import Runtime, load_models, predict_array
from tgs.predict.submission import score_file, validate_file
from tgs.run.folder import Run


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_cli_pipeline_end_to_end(synth_dir, tiny_config, tmp_path):
    folds, run = tmp_path / "folds.csv", tmp_path / "run"
    assert main(["folds", "--data", str(synth_dir), "--out", str(folds), "--n-folds", "2"]) == 0
    for k in (0, 1):
        args = train_args(tiny_config, synth_dir, folds, k, run, "lr=0.01")
        assert main(args) == 0
    for name in ("config.yaml", "meta.json"):
        assert (run / name).is_file()
    assert "lr: 0.01" in (run / "config.yaml").read_text()
    assert re.fullmatch(
        r"[0-9a-f]{40}(-dirty)?|unknown", json.loads((run / "meta.json").read_text())["commit"]
    )
    for k in (0, 1):
        for name in ("best.pt", "last.pt", "log.csv", "oof.npz", "summary.json"):
            assert (run / f"fold{k}" / name).is_file()
        log = pd.read_csv(run / f"fold{k}" / "log.csv")
        assert list(log.columns) == ["epoch", "stage", "loss", "val_score", "lr", "seconds"]
    data, r = load_data(synth_dir), Run(run)
    cfg, rt = r.config(), Runtime.from_config(r.config())
    oof_ids = []
    for k in (0, 1):
        with np.load(run / f"fold{k}" / "oof.npz") as z:
            assert z["probs"].dtype == np.float16 and z["probs"].shape[1:] == (101, 101)
            rows = [data.ids.index(i) for i in z["ids"]]
            model = load_models([r.fold(k).best], rt)  # OOF = fold k's best model, hflip, val ids
            expect, _ = predict_array(model, data.images[rows], rt, cfg.val_batch_size, "hflip")
            np.testing.assert_array_equal(z["probs"], expect.astype(np.float16))
            oof_ids += z["ids"].tolist()
    train_ids = pd.read_csv(synth_dir / "train.csv", dtype=str)["id"].tolist()
    assert sorted(oof_ids) == sorted(train_ids)  # every train id exactly once

    assert main(["threshold", "--run", str(run)]) == 0
    th = json.loads((run / "thresholds.json").read_text())
    assert th["complete"] and th["n_images"] == 60 and th["folds"] == [0, 1]
    ids, probs, _, _ = r.load_oof()
    rows = [data.ids.index(i) for i in ids]
    chosen = postprocess(probs, th["threshold"], th["min_area"], blank=is_blank(data.images[rows]))
    assert competition_score(chosen, data.masks[rows]) == pytest.approx(th["cv"], abs=1e-12)
    assert th["tta"] == "hflip" and th["models"] == ["fold0/best.pt", "fold1/best.pt"]
    assert (run / "cv.png").read_bytes()[:4] == b"\x89PNG"

    sub = tmp_path / "sub.csv"
    assert main(["predict", "--run", str(run), "--out", str(sub)]) == 0
    assert validate_file(sub, synth_dir / "sample_submission.csv") == 20
    manifest = json.loads(sub.with_suffix(".json").read_text())
    assert manifest["folds"] == [0, 1] and manifest["cv"] == th["cv"]
    assert manifest["config"]["name"] == "tiny" and manifest["commit"]
    # the submission is the 2-fold x hflip ensemble, post-processed with the searched values
    test = read_rle_csv(synth_dir / "sample_submission.csv")["id"].tolist()
    images = np.stack([read_image(synth_dir / "test" / "images" / f"{i}.png") for i in test])
    models = load_models([r.fold(k).best for k in (0, 1)], rt)
    probs, _ = predict_array(models, images, rt, cfg.val_batch_size, "hflip")
    masks = postprocess(probs, th["threshold"], th["min_area"], blank=is_blank(images))
    written = read_rle_csv(sub)["rle_mask"].tolist()
    assert written == rle.encode_batch(masks)
    score, n = score_file(sub, synth_dir / "truth.csv")
    truth = rle.decode_batch(read_rle_csv(synth_dir / "truth.csv")["rle_mask"].tolist())
    assert n == 20 and score == pytest.approx(competition_score(masks, truth), abs=1e-12)


def test_train_refuses_other_config_in_same_run(synth_dir, tiny_config, tmp_path):
    folds, run = tmp_path / "folds.csv", tmp_path / "run"
    main(["folds", "--data", str(synth_dir), "--out", str(folds), "--n-folds", "2"])
    base = train_args(tiny_config, synth_dir, folds, 0, run)
    assert main(base) == 0
    assert main([*base, "lr=0.5"]) == 1
    assert main([*base[:-2], "--fold", "7", "--run", str(run)]) == 1  # no such fold


@pytest.mark.slow  # trains or spawns processes
def test_train_folds_script(synth_dir, tiny_config, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "train_folds.sh"),
            "--config",
            str(tiny_config),
            "--data",
            str(synth_dir),
            "--run",
            str(tmp_path / "runs" / "tiny"),
            "epochs=6",  # enough to score above 0, so the fit row below has something to check
            "lr=0.01",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== CV " in proc.stdout
    subs = list((tmp_path / "submissions").glob("tiny-cv*.csv"))
    assert len(subs) == 1
    assert validate_file(subs[0], synth_dir / "sample_submission.csv") == 20
    assert list((tmp_path / "folds").glob("*.csv"))
    assert "score against" in proc.stdout  # synthetic data carries truth.csv
    scored = float(re.search(r"score against the held-out truth.csv: ([\d.]+)", proc.stdout)[1])
    # where that score is lost: scripts/analyse_holdout.py on the same run and holdout
    cmd = [sys.executable, str(ROOT / "scripts" / "analyse_holdout.py"), "runs/tiny"]
    out = subprocess.run(
        [*cmd, "--data", str(synth_dir)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    values = dict(re.findall(r"^(.+?)\s{2,}([\d.]+)", out.stdout, re.M))
    assert float(values["holdout score"]) == pytest.approx(scored, abs=6e-5)
    lost = [float(v) for k, v in values.items() if k.startswith("lost: ")]
    assert len(lost) == 3 and sum(lost) == pytest.approx(1 - scored, abs=2e-4)
    # the fit row: the first fold's best model on its validation fold is the score it was kept for
    fit = re.search(
        r"^fit of fold (\d+).*?([\d.]+) \((\d+)\) / ([\d.]+) \((\d+)\)$", out.stdout, re.M
    )
    summary = json.loads(
        (tmp_path / "runs" / "tiny" / f"fold{fit[1]}" / "summary.json").read_text()
    )
    assert float(fit[4]) == pytest.approx(summary["best_val_score"], abs=1e-4)
    assert (int(fit[3]), int(fit[5])) == (min(600, summary["n_train"]), summary["n_val"])


def test_torchrun_command_carries_rendezvous_options(tmp_path):
    from tgs.pipeline.job import RunOptions
    from tgs.pipeline.launch import _train_command

    run = Run(tmp_path / "r")
    opts = RunOptions(nproc=4, torchrun=["--nnodes", "2", "--rdzv_endpoint", "host:29400"])
    cmd = _train_command(run, tmp_path / "data", 3, True, opts)
    i = cmd.index("torch.distributed.run")
    assert cmd[i + 1 : i + 5] == ["--nnodes", "2", "--rdzv_endpoint", "host:29400"]
    assert cmd[cmd.index("--nproc_per_node") + 1] == "4" and "--standalone" not in cmd
    assert (
        cmd[-7:]
        == ["--folds", str(run.paths.folds), "--fold", "3", "--run-dir", str(run.root), "--resume"][
            -7:
        ]
    )
    single = _train_command(run, tmp_path, 0, False, RunOptions(nproc=2))
    assert "--standalone" in single and "--resume" not in single


@pytest.mark.slow  # trains or spawns processes
def test_run_gpus_trains_folds_in_parallel_children(synth_dir, tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "waves"
    args = ["run", "--config", str(tiny_config), "--data", str(synth_dir), "--run", str(run)]
    args += ["--no-report", "max_train_batches=1"]
    assert main([*args, "--gpus", "0,1"]) == 0
    for k in (0, 1):  # each fold ran in its own process, its output in RUN/fold{k}.log
        assert f"fold {k} epoch 1/1" in (run / f"fold{k}.log").read_text()
    th = json.loads((run / "thresholds.json").read_text())
    assert th["folds"] == [0, 1] and list((tmp_path / "submissions").glob("waves-cv*.csv"))
    assert main(args) == 1  # finished folds are not overwritten silently
    assert main([*args, "--resume"]) == 0  # nothing left to train: search and predict again


@pytest.mark.slow  # trains or spawns processes
def test_run_jobs_trains_folds_in_parallel_cpu_processes(
    synth_dir, tiny_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "jobs"
    args = ["run", "--config", str(tiny_config), "--data", str(synth_dir), "--run", str(run)]
    assert main([*args, "--jobs", "2", "--no-report", "max_train_batches=1", "n_folds=3"]) == 0
    cores = os.cpu_count() or 1
    for k in (0, 1, 2):
        assert f"fold {k} epoch 1/1" in (run / f"fold{k}.log").read_text()
    for k in (0, 1):  # the cores split between the 2 folds of the first wave
        assert f"fold {k}: {max(1, cores // 2)} CPU threads" in (run / f"fold{k}.log").read_text()
    # fold 2 trains alone in the second wave: every core is its own
    assert f"fold 2: {cores} CPU threads" in (run / "fold2.log").read_text()


@pytest.mark.slow  # trains or spawns processes
def test_run_jobs_with_one_fold_to_train_keeps_every_core(
    synth_dir, tiny_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "one"
    args = ["run", "--config", str(tiny_config), "--data", str(synth_dir), "--run", str(run)]
    assert main([*args, "--jobs", "2", "--no-report", "max_train_batches=1", "folds=[0]"]) == 0
    assert "threads: 0" in (run / "config.yaml").read_text()  # not split: one fold at a time
    assert json.loads((run / "thresholds.json").read_text())["folds"] == [0]


def test_analyse_holdout_splits_the_lost_score_by_kind_of_error():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ah", ROOT / "scripts" / "analyse_holdout.py")
    ah = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ah)
    truth = np.zeros((4, 101, 101), bool)
    truth[2:, 20:60, 20:60] = True  # two empty images, two with salt
    masks = truth.copy()
    masks[1, 0:10, 0:10] = True  # empty image predicted with salt: scores 0
    masks[2] = False  # salt image predicted empty: scores 0
    probs = np.where(masks, 0.9, 0.1).astype(np.float32)
    th = {"threshold": 0.5, "min_area": 0, "empty_threshold": 0.0, "blank_rule": False}
    rows = dict(
        ah.analyse(
            {"th": th, "probs": probs, "cls": None, "masks": masks, "images": None, "truth": truth}
        )
    )
    assert rows["holdout score"].startswith("0.5000 (4 images, 2 with salt)")
    assert rows["lost: salt images predicted empty"] == "0.2500 (1 images)"
    assert rows["lost: IoU missed on the salt images found"] == "0.0000 (1 images)"
    assert rows["lost: empty images predicted with salt"] == "0.2500 (1 images)"
    assert rows["score of salt under 10% of the image"] == "none"  # both cover 16%
    assert rows["post-processing searched on OOF"].endswith("-> 0.5000")
    # the holdout's own best post-processing drops the 100-pixel false positive by min-area
    assert rows["the holdout's own best"].endswith("-> 0.7500")


def test_a_folds_file_tgs_named_is_remade_when_the_data_changed(synth_dir, tmp_path, caplog):
    """folds/<data>-<k>f-s<seed>.csv is tgs's own: made for another data set in a folder of the
    same name (or damaged), it is made again with a note, never refused. A folds file the user
    named is checked and refused as before."""
    import logging

    from tgs.core.config import load_config
    from tgs.core.errors import DataError
    from tgs.data.folds import load_folds
    from tgs.data.synth import synth
    from tgs.pipeline.job import default_folds_csv, ensure_folds

    cfg = load_config(None, ["n_folds=2"])
    first, other = load_data(synth_dir), load_data(synth(tmp_path / "d", 40, 4, seed=7))
    path = default_folds_csv(tmp_path / "synth", cfg)
    assert path.name == "synth-2f-s42.csv"
    path = tmp_path / path
    ensure_folds(path, first, cfg, named_by_tgs=True)
    made = path.read_text()
    ensure_folds(path, first, cfg, named_by_tgs=True)  # fits: left as it is
    assert path.read_text() == made
    with pytest.raises(DataError, match="does not match the data"):
        ensure_folds(path, other, cfg, named_by_tgs=False)  # the user's file: refused
        load_folds(path, other.ids)
    with caplog.at_level(logging.WARNING, logger="tgs"):
        ensure_folds(path, other, cfg, named_by_tgs=True)
    assert "no longer fits the data" in caplog.text
    assert sorted(load_folds(path, other.ids)["id"]) == sorted(other.ids)
    path.write_text("id,fold\n")  # damaged (cut short): made again too
    ensure_folds(path, other, cfg, named_by_tgs=True)
    assert len(load_folds(path, other.ids)) == len(other.ids)
