"""The run folder's owner, the decoded-data cache, safe checkpoints and the inference module."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import ROOT, TINY_ARGS
from tgs.core.config import load_config
from tgs.core.errors import TGSError
from tgs.data import cache
from tgs.models.checkpoint import load_model, read_checkpoint, save_checkpoint
from tgs.models.registry import model_from_config
from tgs.run.folder import Run
from tgs.run.records import FoldSummary


def _checkpoint(run: Run, k: int, path: Path, cfg) -> None:
    model = model_from_config(cfg)
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": 0})


def test_model_files_are_snapshots_in_cycle_order_else_best(tmp_path):
    cfg = load_config(None, TINY_ARGS)
    run = Run(tmp_path / "r").create(cfg)
    for k in (0, 1):
        _checkpoint(run, k, run.fold(k).best, cfg)
    for cycle in (10, 2, 1):  # numeric, not lexical, order
        _checkpoint(run, 1, run.fold(1).snapshot(cycle), cfg)
    (run.fold(1).dir / "snapshot-old.pt").write_bytes(b"")  # not a snapshot name
    assert run.model_files(0) == [run.fold(0).best]
    assert [p.name for p in run.model_files(1)] == ["snapshot1.pt", "snapshot2.pt", "snapshot10.pt"]
    assert run.trained_folds() == [0, 1]
    assert [run.relative(p) for p in run.all_model_files()][:2] == [
        "fold0/best.pt",
        "fold1/snapshot1.pt",
    ]


def test_create_copies_folds_and_refuses_other_folds_or_config(tmp_path):
    folds = tmp_path / "folds.csv"
    folds.write_text("id,fold\na,0\nb,1\n")
    cfg = load_config(None, TINY_ARGS)
    run = Run(tmp_path / "r").create(cfg, tmp_path, folds)
    meta = run.metadata()
    assert run.paths.folds.read_text() == folds.read_text()
    assert meta.folds_sha256 and meta.data == str(tmp_path.resolve())
    assert meta.cpu and "torch" in meta.versions and meta.cpu_count >= 1
    assert meta.folds == str(folds) and meta.config_sha256
    other = tmp_path / "other.csv"
    other.write_text("id,fold\na,1\nb,0\n")
    with pytest.raises(TGSError, match="other folds"):
        run.create(cfg, tmp_path, other)
    with pytest.raises(TGSError, match=r"another config .*: lr, model_kwargs differ"):
        run.create(load_config(None, [*TINY_ARGS, "lr=0.5", "model_kwargs.n_filters=6"]))
    runtime = load_config(None, [*TINY_ARGS, "threads=3", "jobs=2", "device=cpu"])
    assert run.create(runtime).config() == runtime  # runtime keys may change on resume


def test_meta_commit_is_the_source_commit(tmp_path):
    run = Run(tmp_path / "r").create(load_config(None, TINY_ARGS))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert run.metadata().commit.removesuffix("-dirty") == head.stdout.strip()


def test_not_a_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TGSError, match="not a run folder"):
        Run(tmp_path).config()
    with pytest.raises(TGSError, match="no trained fold"):
        Run(tmp_path).all_model_files()


# -- checkpoints ---------------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Evil()}, path)
    with pytest.raises(TGSError, match="refusing"):
        read_checkpoint(path)


def test_old_checkpoint_with_numpy_rng_state_still_reads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"model": {}, "rng": {"numpy": np.random.get_state()}}, path)
    assert read_checkpoint(path)["rng"]["numpy"][0] == "MT19937"


def test_imagenet_run_loads_without_downloading(tmp_path, monkeypatch):
    cfg = load_config(None, ["model=unet", "encoder=resnet18", "geometry=none"])
    model = model_from_config(cfg)  # weights made here (no download: encoder_weights None)
    saved = load_config(
        None, ["model=unet", "encoder=resnet18", "geometry=none", "encoder_weights=imagenet"]
    )
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": saved.to_dict()})

    def no_network(*a, **k):
        raise AssertionError("tried to download weights")

    import segmentation_models_pytorch.encoders as enc

    monkeypatch.setattr(enc, "load_state_dict_from_url", no_network, raising=False)
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", no_network)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", no_network)
    loaded, cfg2 = load_model(path)
    assert cfg2.encoder_weights == "imagenet"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


# -- data cache ----------------------------------------------------------------------------
def _copy_data(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(cache.CACHE_DIR))
    return dst


def test_cache_is_used_and_rebuilt_when_a_file_changes(synth_dir, tmp_path, monkeypatch):
    data_dir = _copy_data(synth_dir, tmp_path / "d")
    first = cache.load_train_cached(data_dir)
    assert cache.cache_path(data_dir).is_file()
    calls = []
    real = cache.load_train
    monkeypatch.setattr(cache, "load_train", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = cache.load_train_cached(data_dir)
    assert calls == [] and again.ids == first.ids
    np.testing.assert_array_equal(again.masks, first.masks)
    # change one mask PNG: the cache is stale and never used
    import cv2

    mask_path = data_dir / "train" / "masks" / f"{first.ids[0]}.png"
    flipped = (1 - first.masks[0]) * 255
    cv2.imwrite(str(mask_path), flipped.astype(np.uint8))
    with pytest.raises(TGSError, match="disagrees with its RLE"):
        cache.load_train_cached(data_dir)  # rebuilt, so the RLE cross-check runs again
    assert calls == [1]


def test_read_only_data_folder_works_uncached(synth_dir, tmp_path, monkeypatch, caplog):
    data_dir = _copy_data(synth_dir, tmp_path / "ro")

    def refuse(*a, **k):
        raise TGSError("cannot write: read-only file system")

    monkeypatch.setattr(cache, "atomic_path", refuse)
    with caplog.at_level(logging.WARNING, logger="tgs"):
        data = cache.load_train_cached(data_dir)
    assert len(data.ids) == 60 and not cache.cache_path(data_dir).exists()
    assert "could not cache" in caplog.text


def test_missing_depths_are_reported_with_ids(synth_dir, tmp_path, caplog):
    import pandas as pd

    data_dir = _copy_data(synth_dir, tmp_path / "nodepth")
    depths = pd.read_csv(data_dir / "depths.csv", dtype={"id": str})
    dropped = depths["id"].iloc[:2].tolist()
    depths.iloc[2:].to_csv(data_dir / "depths.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="tgs"):
        cache.load_train_cached(data_dir)
    assert "no depth for 2 of 60" in caplog.text and dropped[0] in caplog.text


# -- inference does not import training -------------------------------------------------------
@pytest.mark.slow  # trains or spawns processes
def test_predict_path_imports_nothing_from_training():
    code = (
        "import sys, tgs.predict.test_set, tgs.kaggle.inference_kernel, tgs.predict.inference;"
        "bad = [m for m in sys.modules if m.startswith(('tgs.train', 'tgs.models.losses',"
        " 'tgs.data.batch_aug', 'tgs.pipeline', 'tgs.budget')) or m == 'albumentations'];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_thresholds_record_how_the_oof_was_made_and_predict_warns_on_other_tta(
    synth_dir, tmp_path, caplog
):
    from tgs.cli.main import main
    from tgs.data.folds import make_folds, save_folds
    from tgs.pipeline.stages import load_data, search_thresholds, train_fold

    data = load_data(synth_dir)
    folds = make_folds(data.ids, data.masks, data.z, 2, 0)
    save_folds(folds, tmp_path / "folds.csv")
    cfg = load_config(None, [*TINY_ARGS, "epochs=1", "max_train_batches=2", "batch_size=8"])
    run = Run(tmp_path / "r").create(cfg, synth_dir, tmp_path / "folds.csv")
    for k in (0, 1):
        train_fold(run, cfg, data, folds, k)
    th = search_thresholds(run)
    assert th == run.thresholds()  # the record written
    assert th.tta == "hflip" and th.models == ["fold0/best.pt", "fold1/best.pt"]
    sub = tmp_path / "s.csv"
    with caplog.at_level(logging.WARNING, logger="tgs"):
        assert main(["predict", "--run", str(run.root), "--out", str(sub), "--tta", "none"]) == 0
    assert "searched on OOF made with tta='hflip'" in caplog.text
    assert json.loads(sub.with_suffix(".json").read_text())["warning"]
    import shutil

    shutil.copy(run.fold(0).best, run.fold(0).snapshot(1))  # fold 0 changed after the search
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tgs"):
        assert main(["predict", "--run", str(run.root), "--out", str(sub)]) == 0
    assert "fold0/snapshot1.pt" in caplog.text and "tgs threshold" in caplog.text


def test_runtime_keys_may_change_on_resume_others_may_not(tmp_path):
    cfg = load_config(None, TINY_ARGS)
    run = Run(tmp_path / "r").create(cfg)
    run.create(load_config(None, [*TINY_ARGS, "threads=1", "jobs=2"]))  # another machine's cores
    assert run.config().threads == 1
    with pytest.raises(TGSError, match="lr differ"):
        run.create(load_config(None, [*TINY_ARGS, "threads=1", "jobs=2", "lr=0.5"]))


def test_folds_made_with_different_ttas_cannot_share_a_search(tmp_path):
    run = Run(tmp_path / "r").create(load_config(None, TINY_ARGS))
    for k, tta in ((0, "hflip"), (1, "none")):
        run.write(FoldSummary(fold=k, tta=tta, models=[f"fold{k}/best.pt"]))
    with pytest.raises(TGSError, match="different TTAs"):
        run.oof_provenance([0, 1])
    run.write(FoldSummary(fold=1, tta="hflip", models=["fold1/snapshot1.pt"]))
    assert run.oof_provenance([0, 1]) == (
        "hflip",
        ["fold0/best.pt", "fold1/snapshot1.pt"],  # what each OOF was made with
    )
    with pytest.raises(TGSError, match="without its fold"):
        run.write(FoldSummary(tta="hflip"))


def test_cache_rebuilds_when_a_csv_changes_with_size_and_mtime_kept(synth_dir, tmp_path):
    data_dir = _copy_data(synth_dir, tmp_path / "d")
    first = cache.load_train_cached(data_dir)
    depths = data_dir / "depths.csv"
    st = depths.stat()
    text = depths.read_text()
    digit = next(i for i, c in enumerate(text) if c.isdigit() and i > text.index("\n"))
    swapped = text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1 :]
    depths.write_text(swapped)  # same size
    os.utime(depths, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, as `cp -p` keeps it
    again = cache.load_train_cached(data_dir)
    assert not np.array_equal(np.nan_to_num(again.z), np.nan_to_num(first.z))


def test_nothing_calls_runs_old_names():
    """`Run`'s old names (config_path, meta(), best(k)... moved by issue 33 to `run.paths`,
    `run.fold(k)`, `run.metadata()` and `run.write`) are gone, and nothing calls them."""
    import re

    old = re.compile(
        r"(?<!sys)\.(config_path|meta_path|thresholds_path|kernel_submission_path"
        r"|write_thresholds)\b|\.meta\(\)|\brun\.(best|snapshot|snapshots)\("
    )
    users = [
        f"{p.relative_to(ROOT)}:{n}"
        for folder in ("tgs", "scripts", "tests")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "test_folder.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if old.search(line)
    ]
    assert users == []
    assert not [n for n in ("config_path", "meta", "best", "snapshots") if hasattr(Run, n)]
