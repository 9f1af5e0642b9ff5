"""The run folder's typed records: every file of a tgs 0.1.0 run folder loads, predict and the
threshold search on it give what that release gave, each record round-trips, and a
broken file is refused with its name and the command that rebuilds it. Also the one
post-processing rule and the one weighted mean, against the arithmetic they replaced."""

from __future__ import annotations

import dataclasses
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
    EncoderWeights,
    FoldRefit,
    FoldRefits,
    FoldSummary,
    KaggleScore,
    KaggleStaging,
    Manifest,
    Measured,
    Meta,
    Plan,
    PseudoLabels,
    StagedWeights,
    StageInfo,
    Thresholds,
    TrainedOn,
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
    assert old_run.oof_provenance([0, 1]) == (th.tta, th.models)
    assert old_run.plans.plan() is None and old_run.plans.refits(0) == []
    assert old_run.plans.schedule(0) is None
    meta = old_run.metadata()
    assert old_run.config().name == "tiny" and meta.folds_sha256 == "ecd21fb8dea65a99"
    assert meta.commit.startswith("e579213") and meta.gpu is None and not meta.extra
    made = Manifest.read(FIXTURE / "run-v0-cv0.6123.json")
    assert made.submission == OLD_CSV.name and made.thresholds == th and made.warning is None
    assert made.made_by == "local" and made.config_name == "tiny" and not made.extra
    # read and written again, each file keeps its bytes
    for path, record in [
        (FIXTURE / "run-v0" / "thresholds.json", Thresholds),
        (FIXTURE / "run-v0" / "fold0" / "summary.json", FoldSummary),
        (FIXTURE / "run-v0" / "fold1" / "summary.json", FoldSummary),
        (FIXTURE / "run-v0" / "meta.json", Meta),
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
    old_run.paths.thresholds.unlink()
    assert main(["threshold", *args]) == 0  # a search over the stored OOF (float16 on disk)
    found = json.loads(old_run.paths.thresholds.read_text())
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
    Manifest(
        submission="a.csv",
        run="runs/a",
        warning=None,
        kaggle=[KaggleScore(status="pending", public=0.8, extra={"later": 1})],
    ),
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
    StageInfo(
        run="r",
        models=[],
        stage_id="s1",
        kind="train",
        resume_from="me/k",
        internet=False,
        weights=StagedWeights(package="p==1", sha256="ab", folder="packages"),
    ),
    Meta(
        commit="abc",
        versions={"torch": "2.9"},
        gpu=None,
        encoder_weights=EncoderWeights(
            encoder="resnet34", source="hub", weights="imagenet", mean=0.45, std=0.22
        ),
        data="/d",
        trained_on=TrainedOn(where="kaggle", kernel="me/k", resumed=False),
    ),
    Plan(
        measured=Measured(step_seconds=0.5, val_seconds=4.0, n_val=200, steps_per_epoch=20),
        epoch_seconds=14.0,
        fold_seconds=600.0,
        epochs=40,
        gpu=None,
    ),
    PseudoLabels(
        run="r",
        data="d",
        rule={"low": 0.2},
        post_processing={"threshold": 0.5, "gate": None},
        tta="hflip",
        models=["fold0/best.pt"],
        n_test=20,
        n_kept=8,
        n_kept_empty=5,
        n_kept_salt=3,
    ),
]


@pytest.mark.parametrize("record", ROUND_TRIPS, ids=lambda r: type(r).__name__)
def test_record_round_trips(record, tmp_path):
    path = tmp_path / "record.json"
    record.write(path)
    assert type(record).read(path) == record
    assert type(record).from_dict(json.loads(path.read_text())) == record


def test_plan_and_fold_refits_round_trip(tmp_path):
    run = Run(tmp_path / "r")
    measured = Measured(step_seconds=0.5, val_seconds=4.0, n_val=200, steps_per_epoch=20)
    plan = Plan(measured=measured, epoch_seconds=3.5, fold_seconds=60.0, epochs=7, stage2_epochs=1)
    run.plans.write_plan(plan)
    assert run.plans.plan() == plan and run.plans.plan().planned()["epochs"] == 7
    refits = [FoldRefit(epochs=5, ratio=1.1), FoldRefit(epochs=6), FoldRefit(epochs=4)]
    refits[1] = FoldRefit(epochs=6, extra={"n": 2})  # a field a later release adds survives
    run.plans.write_refits(0, refits)
    assert run.plans.refits(0) == refits
    nested = json.loads(run.fold(0).refits.read_text())
    assert nested["epochs"] == 4 and nested["previous"]["previous"] == refits[0].to_dict()
    assert nested == FoldRefits(tuple(refits)).to_dict()
    assert run.plans.schedule(0) == refits[-1]
    run.plans.write_refits(1, [])
    assert run.plans.refits(1) == [] and run.plans.schedule(1) == plan


PLAN = json.dumps(
    {
        "measured": {"step_seconds": 1, "val_seconds": 2, "n_val": 3, "steps_per_epoch": 4},
        "epoch_seconds": 6,
        "fold_seconds": 60,
        "epochs": 7,
    }
)


@pytest.mark.parametrize(
    "name, text, why",
    [
        (
            "thresholds.json",
            '{"threshold": "0.5", "min_area": 0}',
            "'threshold' should be a number",
        ),
        ("thresholds.json", '{"threshold": 0.5, "min_area": 0.5}', "'min_area' should be an int"),
        ("thresholds.json", '{"threshold": null, "min_area": 0}', "'threshold' should be a numb"),
        ("thresholds.json", '{"threshold": 0.5, "min_area": 0, "folds": [0, "1"]}', "'folds'"),
        ("thresholds.json", '{"threshold": 0.5}', "'min_area' missing"),
        ("thresholds.json", '{"threshold": 0.5, "min_a', "not JSON"),
        ("thresholds.json", "[0.5]", "expected a JSON object"),
        ("fold0/summary.json", '{"fold": 0, "tta": 1}', "'tta' should be a string"),
        ("fold0/summary.json", '{"fold": 0, "best_epo', "not JSON"),
        ("plan.json", PLAN.replace('"epochs": 7', '"epochs": "7"'), "'epochs' should be an int"),
        ("plan.json", '{"epochs": 7', "not JSON"),
        ("plan.json", '{"epochs": 7, "epoch_seconds": 1, "fold_seconds": 9}', "'measured' missing"),
        ("meta.json", '{"data": ["d"]}', "'data' should be a string"),
        ("fold0/plan.json", '{"epochs": 7, "previous": 3}', "'previous'"),
    ],
)
def test_a_broken_run_file_is_named_with_the_command_that_rebuilds_it(old_run, name, text, why):
    path = old_run.root / name
    path.write_text(text)
    read = {
        "thresholds.json": old_run.thresholds,
        "fold0/summary.json": lambda: old_run.summary(0),
        "plan.json": old_run.plans.plan,
        "fold0/plan.json": lambda: old_run.plans.refits(0),
        "meta.json": old_run.metadata,
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
    member = '{"run": 3, "weight": 1, "tta": "none", "folds": null, "models": [], "cv": 0.5}'
    (tmp_path / "b" / "blend.json").write_text(f'{{"members": [{member}], "data": "d"}}')
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


def test_a_record_is_checked_when_made_and_frozen(tmp_path):
    run = Run(tmp_path / "r")
    with pytest.raises(TGSError, match="'gate' should be a string"):
        run.write(Thresholds.from_dict({"threshold": 0.5, "min_area": 0, "gate": 1}))
    with pytest.raises(TGSError, match="'min_area' should be an integer, got '3'"):
        Thresholds(threshold=0.5, min_area="3")
    assert not run.paths.thresholds.exists()
    th = Thresholds(threshold=1, min_area=0)  # an int is taken for a float
    assert th.threshold == 1.0 and isinstance(th.threshold, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        th.threshold = 0.4
    with pytest.raises(TypeError, match="holds no"):
        run.write(Manifest(submission="s.csv"))
    import tgs.run.records as module

    kinds = [
        c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__
    ]
    made = [c for c in kinds if dataclasses.is_dataclass(c)]
    assert Manifest in made and StageInfo in made  # every record is frozen, these two included
    assert [c for c in made if not c.__dataclass_params__.frozen] == []


def test_stage_info_declares_a_training_datasets_settings():
    """tgs-stage.json as 090af66 wrote it (the training settings in `extra`) reads into declared
    fields and writes back alike; an inference dataset's gains no null training fields."""
    old = {"run": "r", "models": [], "segmentation_models_pytorch": None, "stage_id": "s"}
    old |= {"kind": "train", "resume_from": None, "internet": True, "weights": None}
    info = StageInfo.from_dict(old)
    assert info.kind == "train" and info.internet is True and info.resume_from is None
    assert not info.extra and list(info.to_dict().items()) == list(old.items())
    inference = StageInfo(run="r", models=["fold0/best.pt"], stage_id="s")
    assert list(inference.to_dict()) == ["run", "models", "segmentation_models_pytorch", "stage_id"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        inference.smp = "0.5.0"


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
    want = postprocess(probs, 0.31, 120, gate_score(probs, cls, gate), 0.45, blank=blank)
    got = rule.apply(probs, cls, images)
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    assert 0 < got.any(axis=(1, 2)).sum() < len(got)
    if gate != "mean":  # no head: the head gate is off, mask_max still gates
        want = postprocess(probs, 0.31, 120, gate_score(probs, None, gate), 0.45, blank=blank)
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


# -- a run folder of 1.0's first build (6bd7cfb): budgeted, with refits ----------------------
FIXTURE_10 = ROOT / "tests" / "fixtures" / "run-1.0-6bd7cfb"


@pytest.fixture
def run_10(tmp_path) -> Run:
    return Run(shutil.copytree(FIXTURE_10 / "run-1.0", tmp_path / "run-1.0"))


def test_every_record_of_a_1_0_run_folder_loads_and_writes_back_alike(run_10):
    plan = run_10.plans.plan()
    assert plan.budget_minutes == 0.6 and plan.world == 1 and plan.measured.steps_per_epoch >= 1
    assert plan.epochs >= 1 and plan.cpu and plan.gpu is None
    for k in (0, 1):
        refits = run_10.plans.refits(k)
        assert refits and refits[0].after_epochs == 1 and refits[0].from_epochs == plan.epochs
        assert run_10.plans.schedule(k) == refits[-1]
        summary = run_10.summary(k)
        assert summary.fold == k and summary.epochs == refits[-1].total_epochs
    meta = run_10.metadata()
    assert meta.commit.startswith("6bd7cfb") and meta.config_sha256 and not meta.extra
    assert run_10.config().budget_minutes == 0.6  # its config.yaml is the text meta hashed
    th = run_10.thresholds()
    assert th.models == run_10.prediction_models(th) and run_10.stale_thresholds(th) is None
    root = FIXTURE_10 / "run-1.0"
    made = FIXTURE_10 / next(p.name for p in FIXTURE_10.glob("*.json"))
    files = [
        (root / "thresholds.json", Thresholds),
        (root / "meta.json", Meta),
        (root / "plan.json", Plan),
        (root / "fold0" / "summary.json", FoldSummary),
        (root / "fold0" / "plan.json", FoldRefits),
        (root / "fold1" / "plan.json", FoldRefits),
        (made, Manifest),
    ]
    for path, record in files:
        assert _dumped(record.read(path).to_dict()) == path.read_text(), path


def test_predict_threshold_and_report_on_a_1_0_run_match_it(run_10, synth_dir, tmp_path):
    """As for the 0.1.0 run: the same masks (IoU > 0.99, the same empty calls) and the same
    thresholds (the fixture was made on another CPU), and a report that shows its plan."""
    from tgs.report import build_report

    old_csv = next(FIXTURE_10.glob("*.csv"))
    out = tmp_path / "X.csv"
    args = ["--run", str(run_10.root), "--data", str(synth_dir)]
    assert main(["predict", *args, "--out", str(out)]) == 0
    (ids, new_masks), (old_ids, old_masks) = _masks(out), _masks(old_csv)
    assert ids == old_ids
    union = (new_masks | old_masks).sum()
    assert union == 0 or (new_masks & old_masks).sum() / union > 0.99
    assert (new_masks.any(axis=(1, 2)) == old_masks.any(axis=(1, 2))).all()
    expected = json.loads(run_10.paths.thresholds.read_text())
    run_10.paths.thresholds.unlink()
    assert main(["threshold", *args]) == 0
    found = json.loads(run_10.paths.thresholds.read_text())
    numbers = {k for k, v in expected.items() if isinstance(v, float)}
    assert {k: v for k, v in found.items() if k not in numbers} == {
        k: v for k, v in expected.items() if k not in numbers
    }
    assert {k: found[k] for k in numbers} == pytest.approx({k: expected[k] for k in numbers})
    html = build_report(run_10, synth_dir).read_text()
    assert "0.6 min budget" in html and "fold 1 refit" in html
