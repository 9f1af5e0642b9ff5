"""The run folder's typed records: every file of a tgs 0.1.0 run folder loads, predict and the
threshold search on it give what that release gave, each record round-trips, and a
broken file is refused with its name and the command that rebuilds it. Also the one
post-processing rule and the one weighted mean, against the arithmetic they replaced."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import ROOT
from tgs.cli.main import main
from tgs.core.errors import TGSError
from tgs.data.rle import decode_batch
from tgs.post.rule import PostProcessing, gate_score, is_blank, postprocess
from tgs.predict.ensemble import mean, mean_prediction
from tgs.run.folder import Run
from tgs.run.records import (
    Blend,
    BlendMember,
    FoldRefits,
    FoldSummary,
    KaggleStaging,
    Manifest,
    Plan,
    StageInfo,
    Thresholds,
)

FIXTURE = ROOT / "tests" / "fixtures" / "run-v0-0.1.0"
OLD_CSV = FIXTURE / "run-v0-cv0.6123.csv"


@pytest.fixture(scope="module")
def old_data(tmp_path_factory) -> Path:
    """The data the fixture was made on: `tgs synth --n-train 300 --n-test 40 --seed 1`."""
    from tgs.data.synth import synth

    return synth(tmp_path_factory.mktemp("v0") / "synth", n_train=300, n_test=40, seed=1)


@pytest.fixture
def old_run(tmp_path) -> Run:
    return Run(shutil.copytree(FIXTURE / "run-v0", tmp_path / "run-v0"))


def _dumped(obj) -> str:
    return json.dumps(obj, indent=2) + "\n"


def test_every_record_of_a_0_1_0_run_folder_loads(old_run):
    th = old_run.thresholds()
    assert (th.threshold, th.min_area, th.empty_threshold, th.gate) == (0.41, 0, 0.55, "head")
    assert th.cv_at_half == pytest.approx(0.5483333) and th.folds == [0, 1] and th.complete
    assert th.tta == "hflip" and th.models == ["fold0/best.pt", "fold1/best.pt"] and not th.extra
    assert old_run.stale_thresholds(th) is None
    for k in (0, 1):
        s = old_run.summary(k)
        assert s.fold == k and s.models == [f"fold{k}/best.pt"] and s.n_val == 150 and not s.extra
        assert s.oof_score_half == s.oof_score is not None
    assert old_run.oof_provenance([0, 1]) == {"tta": th.tta, "models": th.models}
    assert old_run.plan() is None and old_run.fold_refits(0) == [] and old_run.fold_plan(0) is None
    assert old_run.config().name == "tiny" and old_run.meta()["folds_sha256"]
    made = Manifest.read(FIXTURE / "run-v0-cv0.6123.json")
    assert made.submission == OLD_CSV.name and made.thresholds == th and made.warning is None
    assert made.made_by == "local" and made.config_name == "tiny" and not made.extra
    # read and written again, each file keeps its bytes
    for path, record in [
        (FIXTURE / "run-v0" / "thresholds.json", Thresholds),
        (FIXTURE / "run-v0" / "fold0" / "summary.json", FoldSummary),
        (FIXTURE / "run-v0" / "fold1" / "summary.json", FoldSummary),
        (FIXTURE / "run-v0-cv0.6123.json", Manifest),
    ]:
        assert _dumped(record.read(path).to_dict()) == path.read_text(), path


def _masks(csv: Path) -> tuple[list[str], np.ndarray]:
    """(ids, masks (N, 101, 101) bool) of a submission CSV."""
    sub = pd.read_csv(csv, dtype={"id": str}, keep_default_na=False)
    return sub["id"].tolist(), decode_batch(sub["rle_mask"].tolist()).astype(bool)


def test_predict_and_threshold_on_a_0_1_0_run_match_that_release(old_run, old_data, tmp_path):
    """What tgs promises across releases and CPU kinds: the old run predicts the masks it made
    then (IoU > 0.99 over all pixels, each image's empty/non-empty call kept; not its bytes: the
    fixture was made on another CPU, and a probability next to the threshold may round the
    other way), with the same manifest fields, and its OOF searches to the same thresholds."""
    out = tmp_path / "X.csv"
    args = ["--run", str(old_run.root), "--data", str(old_data)]
    assert main(["predict", *args, "--out", str(out)]) == 0
    (ids, new_masks), (old_ids, old_masks) = _masks(out), _masks(OLD_CSV)
    assert ids == old_ids and new_masks.any()
    union = (new_masks | old_masks).sum()
    assert (new_masks & old_masks).sum() / union > 0.99
    assert (new_masks.any(axis=(1, 2)) == old_masks.any(axis=(1, 2))).all()
    old = json.loads((FIXTURE / "run-v0-cv0.6123.json").read_text())
    new = json.loads(out.with_suffix(".json").read_text())
    assert set(new) == set(old)
    made_here = ("submission", "run", "data", "commit", "created", "seconds", "model_seconds")
    assert {k: v for k, v in new.items() if k not in (*made_here, "config")} == {
        k: v for k, v in old.items() if k not in (*made_here, "config")
    }
    assert {k: new["config"][k] for k in old["config"]} == old["config"]  # keys may be added
    old_run.thresholds_path.unlink()
    assert main(["threshold", *args]) == 0  # a search over the stored OOF (float16 on disk)
    found = json.loads(old_run.thresholds_path.read_text())
    expected = json.loads((FIXTURE / "run-v0" / "thresholds.json").read_text())
    numbers = {k for k, v in expected.items() if isinstance(v, float)}
    assert {k: v for k, v in found.items() if k not in numbers} == {
        k: v for k, v in expected.items() if k not in numbers
    }
    assert {k: found[k] for k in numbers} == pytest.approx({k: expected[k] for k in numbers})


ROUND_TRIPS = [
    Thresholds(threshold=0.5, min_area=10, gate=None, cv=0.7, extra={"later": [1]}),
    Thresholds(threshold=0.3, min_area=0, empty_threshold=0.4, gate="mean", members_cv=[0.6]),
    FoldSummary(fold=1, best_epoch=3, oof_score=0.61, tta="none", models=["fold1/best.pt"]),
    Manifest(submission="a.csv", run="runs/a", warning=None, kaggle=[{"status": "pending"}]),
    Manifest(
        submission="b.csv",
        blend="blends/b",
        members=[{"run": "a"}],
        thresholds=Thresholds(threshold=0.5, min_area=0, cv=0.5),
        kernel="me/k",
    ),
    Blend(
        members=[BlendMember(run="/r", weight=2.0, tta="hflip", folds=None, models=[], cv=0.5)],
        data="/d",
        gate=None,
    ),
    StageInfo(run="r", models=["fold0/best.pt"], smp="0.5.0", commit="abc", staged="now"),
]


@pytest.mark.parametrize("record", ROUND_TRIPS, ids=lambda r: type(r).__name__)
def test_record_round_trips(record, tmp_path):
    path = tmp_path / "record.json"
    record.write(path)
    assert type(record).read(path) == record
    assert type(record).from_dict(json.loads(path.read_text())) == record


def test_plan_and_fold_refits_round_trip(tmp_path):
    run = Run(tmp_path / "r")
    plan = {"measured": 2.0, "epochs": 7, "stage2_epochs": 1, "epoch_seconds": 3.5, "gpu": None}
    run.write_plan(plan)
    assert run.plan() == plan and list(run.plan()) == list(plan)
    assert Plan.read(run.plan_path).epochs == 7
    refits = [{"epochs": 5, "n": 1}, {"epochs": 6, "n": 2}, {"epochs": 4, "n": 3}]
    run.write_fold_refits(0, refits)
    assert run.fold_refits(0) == refits
    nested = json.loads(run.fold_plan_path(0).read_text())
    assert nested["epochs"] == 4 and nested["previous"]["previous"] == refits[0]
    assert run.fold_plan(0) == nested == FoldRefits(refits).to_dict()
    run.write_fold_refits(1, [])
    assert run.fold_refits(1) == [] and run.fold_plan(1) == plan


@pytest.mark.parametrize(
    "name, text, why",
    [
        (
            "thresholds.json",
            '{"threshold": "0.5", "min_area": 0}',
            "'threshold' should be a number",
        ),
        ("thresholds.json", '{"threshold": 0.5, "min_area": 0.5}', "'min_area' should be an int"),
        ("thresholds.json", '{"threshold": 0.5, "min_area": 0, "folds": [0, "1"]}', "'folds'"),
        ("thresholds.json", '{"threshold": 0.5}', "'min_area' missing"),
        ("thresholds.json", '{"threshold": 0.5, "min_a', "not JSON"),
        ("thresholds.json", "[0.5]", "expected a JSON object"),
        ("fold0/summary.json", '{"fold": 0, "tta": 1}', "'tta' should be a string"),
        ("fold0/summary.json", '{"fold": 0, "best_epo', "not JSON"),
        ("plan.json", '{"epochs": "7"}', "'epochs' should be an integer"),
        ("plan.json", '{"epochs": 7', "not JSON"),
        ("fold0/plan.json", '{"epochs": 7, "previous": 3}', "'previous'"),
    ],
)
def test_a_broken_run_file_is_named_with_the_command_that_rebuilds_it(old_run, name, text, why):
    path = old_run.root / name
    path.write_text(text)
    read = {
        "thresholds.json": old_run.thresholds,
        "fold0/summary.json": lambda: old_run.summary(0),
        "plan.json": old_run.plan,
        "fold0/plan.json": lambda: old_run.fold_refits(0),
    }[name]
    with pytest.raises(TGSError, match=why) as e:
        read()
    assert str(path) in str(e.value)
    command = "tgs threshold --run" if name == "thresholds.json" else "tgs "
    assert command in str(e.value)


def test_missing_and_broken_blend_stage_and_manifest_files_are_named(tmp_path):
    from tgs.predict.blend import read_blend

    with pytest.raises(TGSError, match=r"blend\.json missing: run `python -m tgs blend"):
        read_blend(tmp_path / "b")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "blend.json").write_text('{"members": [{"run": 3}], "data": "d"}')
    with pytest.raises(TGSError, match="'run' should be a string") as e:
        read_blend(tmp_path / "b")
    assert str(tmp_path / "b" / "blend.json") in str(e.value) and "tgs blend" in str(e.value)
    (tmp_path / "tgs-stage.json").write_text('{"run": "r", "models": "fold0/best.pt"}')
    with pytest.raises(TGSError, match="'models' should be a list of strings.*push-kernel"):
        StageInfo.read(tmp_path / "tgs-stage.json")
    (tmp_path / "s.json").write_text('{"submission": "s.csv", "cv": "high"}')
    with pytest.raises(TGSError, match=r"s\.json: field 'cv' should be a number.*tgs predict"):
        Manifest.read(tmp_path / "s.json")
    with pytest.raises(TGSError, match="missing: run `python -m tgs threshold --run"):
        Run(tmp_path / "nothing").thresholds()


def test_write_checks_a_dict_before_writing(tmp_path):
    run = Run(tmp_path / "r")
    with pytest.raises(TGSError, match="'gate' should be a string"):
        run.write_thresholds({"threshold": 0.5, "min_area": 0, "gate": 1})
    assert not run.thresholds_path.exists()


def test_kaggle_staging_layout():
    layout = KaggleStaging()
    assert layout.dataset("r") == Path("build/kaggle/r/dataset")
    assert layout.kernel_metadata("r") == Path("build/kaggle/r/kernel/kernel-metadata.json")
    assert layout.output("r") == Path("build/kaggle/r/output")


# -- the post-processing rule ------------------------------------------------------------------
def _maps(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.3, 1.0, size=(n, 1, 1))  # some images stay below the threshold
    probs = (rng.uniform(size=(n, 101, 101)) ** 3 * scale).astype(np.float32)
    cls = rng.uniform(size=n).astype(np.float32)
    images = rng.integers(0, 256, (n, 101, 101), dtype=np.uint8)
    images[::7] = 9  # constant images for the blank rule
    return probs, cls, images


@pytest.mark.parametrize("gate", ["head", "mask_max", "mean"])
@pytest.mark.parametrize("blank_rule", [False, True])
def test_rule_applies_exactly_the_recorded_post_processing(gate, blank_rule):
    probs, cls, images = _maps()
    th = Thresholds.from_dict(
        {
            "threshold": 0.31,
            "min_area": 120,
            "empty_threshold": 0.45,
            "gate": gate,
            "blank_rule": blank_rule,
        }  # fmt: skip
    )
    rule = PostProcessing.from_thresholds(th)
    blank = is_blank(images) if blank_rule else None
    want = postprocess(probs, 0.31, 120, gate_score(probs, cls, gate), 0.45, blank)
    got = rule.apply(probs, cls, images)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert 0 < got.any(axis=(1, 2)).sum() < len(got)
    if gate != "mean":  # no head: the head gate is off, mask_max still gates
        want = postprocess(probs, 0.31, 120, gate_score(probs, None, gate), 0.45, blank)
        assert np.array_equal(rule.apply(probs, None, images), want)


def test_rule_of_an_old_run_gates_on_the_head():
    old = PostProcessing.from_thresholds(Thresholds(threshold=0.5, min_area=0))
    assert old == PostProcessing() and old.describe()["gate"] is None
    gated = Thresholds(threshold=0.5, min_area=0, empty_threshold=0.2, gate=None)
    assert PostProcessing.from_thresholds(gated).describe()["gate"] == "head"


# -- the one weighted mean ----------------------------------------------------------------------
def test_mean_keeps_the_arithmetic_of_views_models_and_runs():
    probs, cls, _ = _maps(6)
    parts = [probs ** (1 + i / 3) for i in range(3)]
    heads = [cls ** (1 + i) for i in range(3)]
    # models (predict_array): summed into zeros in order, then divided by their count
    acc = np.zeros_like(probs)
    for p in parts:
        acc += p
    acc /= len(parts)
    assert np.array_equal(mean(parts), acc)
    # views (TTA, torch): summed in order, divided by the count
    views = [torch.from_numpy(p) for p in parts]
    assert torch.equal(mean(views), (views[0] + views[1] + views[2]) / 3)
    # runs (blend): weights normalised in float32, then the products summed in order
    w = np.asarray([2.0, 1.0, 1.0], np.float32) / np.float32(4.0)
    want = w[0] * parts[0] + w[1] * parts[1] + w[2] * parts[2]
    got, got_cls = mean_prediction(list(zip(parts, heads, strict=True)), [2.0, 1.0, 1.0])
    assert np.array_equal(got, want)
    assert np.array_equal(got_cls, w[0] * heads[0] + w[1] * heads[1] + w[2] * heads[2])
    assert mean_prediction([(parts[0], None)]) == (parts[0], None)  # one member: as it is


def test_the_head_is_averaged_only_when_every_member_has_one():
    probs, cls, _ = _maps(4)
    assert mean_prediction([(probs, cls), (probs, None)])[1] is None
    assert mean_prediction([(probs, None), (probs, cls)], [1.0, 3.0])[1] is None
    np.testing.assert_array_equal(mean_prediction([(probs, cls), (probs, cls)])[1], cls)
