"""`tgs blend`: finished runs averaged on their common OOF and on the test set."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_ARGS, fold_trainer
from tgs import rle
from tgs.blend import blend_oof, predict_blend, search_blend
from tgs.cli import main
from tgs.config import load_config
from tgs.errors import TGSError
from tgs.kaggle import local_manifests
from tgs.pipeline import search
from tgs.predict import predict_batches, predict_run
from tgs.run import Run
from tgs.thresholds import gate_score, postprocess


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data, folds, synth_dir):
    """Three finished one-fold runs on the same folds: two with a salt-present head (seeds 0
    and 1), one without; each with its thresholds searched."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, extra in {
        "a": ["cls_weight=0.5", "seed=0"],
        "b": ["cls_weight=0.5", "seed=1", "gate=mask_max"],
        "c": ["seed=2"],
    }.items():
        cfg = load_config(None, [*TINY_ARGS, "n_folds=2", "folds=[0]", *extra])
        fold_trainer(cfg, data, folds, root / name).fit()
        made[name] = Run(root / name)
        search(made[name], synth_dir, data)
    return made


def test_blend_oof_is_the_weighted_mean_in_the_first_runs_order(runs, tmp_path):
    a, b = runs["a"], runs["b"]
    ids_a, pa, ca, _ = a.load_oof()
    ids_b, pb, cb, _ = b.load_oof()
    # b's OOF stored in another order: the blend matches images by id, not by position
    flipped = Run(shutil.copytree(b.root, tmp_path / "b"))
    flipped.save_oof(0, ids_b[::-1], pb[::-1], cb[::-1])
    ids, probs, cls = blend_oof([a, flipped], [3.0, 1.0])
    assert ids == ids_a
    order = [ids_b.index(i) for i in ids_a]
    want = 0.75 * pa.astype(np.float32) + 0.25 * pb[order].astype(np.float32)
    np.testing.assert_allclose(probs, want, atol=1e-6)
    np.testing.assert_allclose(cls, 0.75 * ca + 0.25 * cb[order], atol=1e-6)
    # a member without a head: the blend has none (a mean of heads would be one run's)
    assert blend_oof([a, runs["c"]], [1.0, 1.0])[2] is None


def test_blend_of_a_run_with_itself_is_that_run(runs, synth_dir, tmp_path):
    a = runs["a"]
    th = search_blend([a, a], tmp_path / "aa", synth_dir)
    own = a.thresholds()
    for key in ("threshold", "min_area", "empty_threshold", "gate", "cv"):
        assert th[key] == pytest.approx(own[key]), key
    mine = predict_blend(tmp_path / "aa", synth_dir, 8, tmp_path / "subs")
    theirs = predict_run(a, synth_dir, tmp_path / "a.csv", 8)
    pd.testing.assert_frame_equal(
        pd.read_csv(mine, keep_default_na=False), pd.read_csv(theirs, keep_default_na=False)
    )
    assert mine.name == f"aa-cv{th['cv']:.4f}.csv"


def test_blend_submission_is_the_post_processed_mean_of_the_members(
    runs, synth_dir, tmp_path, monkeypatch
):
    """Through the command line: the blend's masks are its thresholds applied to the weighted
    mean of each member's own test predictions (each with its own models and TTA)."""
    a, b = runs["a"], runs["b"]
    monkeypatch.chdir(tmp_path)  # the submission goes to ./submissions
    out = tmp_path / "ab"
    args = ["blend", str(a.root), str(b.root), "--out", str(out), "--data", str(synth_dir)]
    assert main([*args, "--weights", "2,1"]) == 0
    blend = json.loads((out / "blend.json").read_text())
    th = json.loads((out / "thresholds.json").read_text())
    assert [m["weight"] for m in blend["members"]] == [2.0, 1.0]
    assert th["gate"] == "head"  # the first member's recorded gate (b's is mask_max)
    assert (tmp_path / "submissions" / f"ab-cv{th['cv']:.4f}.csv").is_file()
    listed = local_manifests(tmp_path / "submissions").iloc[0]  # as `tgs kaggle submissions`
    assert (listed.run, listed.config, listed.cv) == (str(out), "blend", th["cv"])
    members = [list(predict_batches(r, synth_dir, 8, "hflip", {})) for r in (a, b)]
    ids = [i for batch in members[0] for i in batch.ids]
    probs = [np.concatenate([x.probs for x in m]) for m in members]
    cls = [np.concatenate([x.cls for x in m]) for m in members]
    p, c = (2 * probs[0] + probs[1]) / 3, (2 * cls[0] + cls[1]) / 3
    # thresholds that keep some images and empty others (a 1-epoch net's search empties all)
    cut, gate = float(np.median(p)), float(np.median(c))
    th = {**th, "threshold": cut, "min_area": 0, "empty_threshold": gate, "blank_rule": False}
    (out / "thresholds.json").write_text(json.dumps(th))
    path = predict_blend(out, synth_dir, 8, tmp_path / "again")  # the stage re-run alone
    masks = postprocess(p, cut, 0, gate_score(p, c, "head"), gate)
    assert 0 < masks.any(axis=(1, 2)).sum() < len(masks)
    alone = postprocess(probs[0], cut, 0, gate_score(probs[0], cls[0], "head"), gate)
    assert (alone != masks).any()  # b's share changes the masks
    sub = pd.read_csv(path)
    got = dict(zip(sub.id, rle.decode_batch(sub.rle_mask), strict=True))
    for i, m in zip(ids, masks, strict=True):
        np.testing.assert_array_equal(got[i], m, err_msg=i)
    # --gate: the blend thresholds the mask max instead, and records it
    assert main([*args, "--gate", "mask_max", "--no-predict"]) == 0
    assert json.loads((out / "thresholds.json").read_text())["gate"] == "mask_max"


def test_blend_refuses_what_it_cannot_average(runs, synth_dir, tmp_path):
    a, b = runs["a"], runs["b"]
    other = Run(shutil.copytree(b.root, tmp_path / "other"))
    ids, probs, cls, _ = b.load_oof()
    other.save_oof(0, ids[1:], probs[1:], cls[1:])  # one image fewer: another folds file
    with pytest.raises(TGSError, match="same folds file"):
        blend_oof([a, other], [1.0, 1.0])
    with pytest.raises(TGSError, match="two runs or more"):
        search_blend([a], tmp_path / "x", synth_dir)
    with pytest.raises(TGSError, match="one weight per run"):
        search_blend([a, b], tmp_path / "x", synth_dir, weights=[1.0])
    with pytest.raises(TGSError, match="positive"):
        search_blend([a, b], tmp_path / "x", synth_dir, weights=[1.0, 0.0])
    with pytest.raises(TGSError, match="blend.json missing"):
        predict_blend(tmp_path / "nothing", synth_dir)
