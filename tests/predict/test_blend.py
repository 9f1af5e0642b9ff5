"""`tgs blend`: finished runs averaged on their common OOF and on the test set."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_ARGS, fold_trainer
from tgs.cli.main import main
from tgs.core.config import load_config
from tgs.core.errors import TGSError
from tgs.data import rle
from tgs.kaggle.competition import local_manifests
from tgs.pipeline.stages import search_thresholds
from tgs.post.rule import gate_score, postprocess
from tgs.predict.blend import blend_oof, predict_blend, search_blend
from tgs.predict.test_set import predict_batches, predict_run
from tgs.run.folder import Run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data, folds, synth_dir):
    """Three finished one-fold runs on the same folds: two with a salt-present head (seeds 0
    and 1; b's OOF made without TTA), one without; each with its thresholds searched."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, extra in {
        "a": ["cls_weight=0.5", "seed=0"],
        "b": ["cls_weight=0.5", "seed=1", "gate=mask_max", "tta=none"],
        "c": ["seed=2"],
    }.items():
        cfg = load_config(None, [*TINY_ARGS, "n_folds=2", "folds=[0]", *extra])
        fold_trainer(cfg, data, folds, root / name).fit()
        made[name] = Run(root / name)
        search_thresholds(made[name], synth_dir, data)
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
    th = search_blend([a, a], tmp_path / "aa", data_dir=synth_dir).to_dict()
    own = a.thresholds().to_dict()
    for key in ("threshold", "min_area", "empty_threshold", "gate", "cv"):
        assert th[key] == pytest.approx(own[key]), key
    mine = predict_blend(tmp_path / "aa", synth_dir, 8, tmp_path / "subs")
    theirs = predict_run(a, synth_dir, out=tmp_path / "a.csv", batch_size=8)
    pd.testing.assert_frame_equal(
        pd.read_csv(mine, keep_default_na=False), pd.read_csv(theirs, keep_default_na=False)
    )
    assert mine.name == f"blend-aa-cv{th['cv']:.4f}.csv"


def _member_predictions(members, synth_dir):
    """Each member's own test prediction (its TTA): ids, probabilities, heads or None."""
    outs = []
    for r in members:
        parts = list(predict_batches(r, synth_dir, 8, r.thresholds().tta, {}))
        cls = None if parts[0].cls is None else np.concatenate([x.cls for x in parts])
        outs.append(
            ([i for x in parts for i in x.ids], np.concatenate([x.probs for x in parts]), cls)
        )
    return outs


def _submitted(path):
    sub = pd.read_csv(path)
    return dict(zip(sub.id, rle.decode_batch(sub.rle_mask), strict=True))


def test_blend_submission_is_the_post_processed_mean_of_the_members(
    runs, synth_dir, tmp_path, monkeypatch
):
    """Through the command line, from relative paths: the blend's masks are its thresholds
    applied to the weighted mean of each member's own test predictions (b's without TTA, as
    its OOF was made), and the prediction stage re-runs alone from another directory."""
    a, b = runs["a"], runs["b"]
    monkeypatch.chdir(a.root.parent)  # members named relative to here; ./submissions
    out = tmp_path / "ab"
    args = ["blend", a.root.name, b.root.name, "--out", str(out), "--data", str(synth_dir)]
    assert main([*args, "--weights", "2,1"]) == 0
    blend = json.loads((out / "blend.json").read_text())
    th = json.loads((out / "thresholds.json").read_text())
    assert [(m["weight"], m["tta"]) for m in blend["members"]] == [(2.0, "hflip"), (1.0, "none")]
    assert th["gate"] == "head"  # the first member's recorded gate (b's is mask_max)
    first = a.root.parent / "submissions" / f"blend-ab-cv{th['cv']:.4f}.csv"
    listed = local_manifests(first.parent).iloc[0]  # as `tgs kaggle submissions` lists it
    assert (listed.run, listed.config, listed.cv) == (str(out), "blend", th["cv"])
    (ids, pa, ca), (_, pb, cb) = _member_predictions([a, b], synth_dir)
    p, c = (2 * pa + pb) / 3, (2 * ca + cb) / 3
    # thresholds that keep some images and empty others (a 1-epoch net's search empties all)
    cut, gate = float(np.median(p)), float(np.median(c))
    th = {**th, "threshold": cut, "min_area": 0, "empty_threshold": gate, "blank_rule": False}
    (out / "thresholds.json").write_text(json.dumps(th))
    monkeypatch.chdir(tmp_path)
    assert main(["blend", "--out", str(out)]) == 0  # the predict stage alone, elsewhere
    masks = postprocess(p, cut, 0, gate_score(p, c, "head"), gate)
    assert 0 < masks.any(axis=(1, 2)).sum() < len(masks)
    alone = postprocess(pa, cut, 0, gate_score(pa, ca, "head"), gate)
    assert (alone != masks).any()  # b's share changes the masks
    got = _submitted(tmp_path / "submissions" / f"blend-ab-cv{th['cv']:.4f}.csv")
    for i, m in zip(ids, masks, strict=True):
        np.testing.assert_array_equal(got[i], m, err_msg=i)
    # --gate: the blend thresholds the mask max instead, and records it
    monkeypatch.chdir(a.root.parent)
    assert main([*args, "--gate", "mask_max", "--no-predict"]) == 0
    assert json.loads((out / "thresholds.json").read_text())["gate"] == "mask_max"


def test_blend_with_a_headless_run_has_no_head(runs, synth_dir, tmp_path):
    """A member without a salt-present head: neither OOF nor test blend uses the other's head,
    so the head gate is off (recorded as null) and `mean` is refused."""
    a, c = runs["a"], runs["c"]
    th = search_blend([a, c], tmp_path / "ac", data_dir=synth_dir).to_dict()
    assert (
        th["gate"] is None
        and json.loads((tmp_path / "ac" / "blend.json").read_text())["gate"] is None
    )
    with pytest.raises(TGSError, match="head in every run"):
        search_blend([a, c], tmp_path / "ac", data_dir=synth_dir, gate="mean")
    (ids, pa, _), (_, pc, cc) = _member_predictions([a, c], synth_dir)
    assert cc is None
    p = (pa + pc) / 2
    cut = float(np.median(p))
    th = {**th, "threshold": cut, "min_area": 0, "empty_threshold": 0.99, "blank_rule": False}
    (tmp_path / "ac" / "thresholds.json").write_text(json.dumps(th))  # a gate that would bite
    got = _submitted(predict_blend(tmp_path / "ac", synth_dir, 8, tmp_path / "subs"))
    for i, m in zip(ids, postprocess(p, cut, 0), strict=True):
        np.testing.assert_array_equal(got[i], m, err_msg=i)


def test_blend_refuses_what_it_cannot_average(runs, synth_dir, tmp_path):
    a, b = runs["a"], runs["b"]
    other = Run(shutil.copytree(b.root, tmp_path / "other"))
    ids, probs, cls, _ = b.load_oof()
    other.save_oof(0, ids[1:], probs[1:], cls[1:])  # one image fewer: another folds file
    with pytest.raises(TGSError, match="same folds file"):
        blend_oof([a, other], [1.0, 1.0])
    with pytest.raises(TGSError, match="two runs or more"):
        search_blend([a], tmp_path / "x", data_dir=synth_dir)
    with pytest.raises(TGSError, match="one weight per run"):
        search_blend([a, b], tmp_path / "x", data_dir=synth_dir, weights=[1.0])
    with pytest.raises(TGSError, match="positive"):
        search_blend([a, b], tmp_path / "x", data_dir=synth_dir, weights=[1.0, 0.0])
    with pytest.raises(TGSError, match="blend.json missing"):
        predict_blend(tmp_path / "nothing", synth_dir)
    with pytest.raises(TGSError, match="is a run folder"):
        search_blend([a, b], a.root, data_dir=synth_dir)
    stale = Run(shutil.copytree(b.root, tmp_path / "stale"))
    stale.write(replace(stale.thresholds(), models=["fold9/best.pt"]))  # other models' OOF
    with pytest.raises(TGSError, match="tgs threshold --run"):
        search_blend([a, stale], tmp_path / "x", data_dir=synth_dir)
    assert (
        main(["blend", str(a.root), str(b.root), "--out", str(tmp_path / "w"), "--weights", "2;1"])
        == 1
    )
