"""Pseudo-labelling: the confidence rule, the written set, and training on it."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import TINY_ARGS
from tgs.cli.main import main
from tgs.core.config import load_config
from tgs.core.errors import TGSError
from tgs.data.folds import make_folds, save_folds
from tgs.pipeline.stages import load_data, search_thresholds, train_fold
from tgs.post.rule import PostProcessing
from tgs.predict.pseudo import Confidence
from tgs.run.folder import Run
from tgs.run.records import Thresholds


def test_rule_keeps_sure_images_empty_and_salt():
    probs = np.full((4, 10, 10), 0.02, np.float32)
    probs[1, :5] = 0.97  # sure salt in the top half
    probs[2, 0, :3] = 0.5  # 3 unsure pixels of 100
    probs[3, :5] = 0.97
    masks = (probs > 0.5).astype(np.uint8)
    rule = Confidence(max_uncertain=0.01)
    assert rule.select(probs, masks, None).tolist() == [True, True, False, True]
    cls = np.array([0.05, 0.95, 0.05, 0.3])  # the head doubts image 3's salt
    assert rule.select(probs, masks, cls).tolist() == [True, True, False, False]


@pytest.fixture(scope="module")
def pseudo_run(synth_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pseudo")
    data = load_data(synth_dir)
    folds = make_folds(data.ids, data.masks, data.z, 2, 0)
    save_folds(folds, tmp / "folds.csv")
    cfg = load_config(
        None,
        [
            *TINY_ARGS,
            "batch_size=8",
            "epochs=2",
            "max_train_batches=3",
        ],
    )
    run = Run(tmp / "r").create(cfg, synth_dir, tmp / "folds.csv")
    for k in (0, 1):
        train_fold(run, cfg, data, folds, k)
    search_thresholds(run)
    return run, data, folds, tmp


def test_pseudo_writes_the_submission_labels_of_confident_images(pseudo_run, synth_dir):
    run, data, folds, tmp = pseudo_run
    strict = ["--low", "0", "--high", "1", "--max-uncertain", "0"]  # every pixel is unsure
    assert main(["pseudo", "--run", str(run.root), *strict]) == 1  # nothing kept: an error
    assert not run.paths.pseudo.exists()  # and nothing written
    loose = ["--low", "0.3", "--high", "0.7", "--max-uncertain", "1"]  # a tiny net: keep all
    assert main(["pseudo", "--run", str(run.root), *loose]) == 0
    info = json.loads((run.paths.pseudo / "pseudo.json").read_text())
    assert info["rule"] == {"low": 0.3, "high": 0.7, "max_uncertain": 1.0}
    assert info["n_test"] == 20 and info["n_kept"] == 20
    assert info["n_kept"] == info["n_kept_empty"] + info["n_kept_salt"]
    th = run.thresholds()  # the post-processing that made the labels (no head: no gate)
    assert info["post_processing"] == {
        "threshold": th.threshold,
        "min_area": th.min_area,
        "gate": None,
        "empty_threshold": 0.0,
        "blank_rule": True,
    }
    pseudo = load_data(run.paths.pseudo)  # a labelled set in the competition layout
    assert not set(pseudo.ids) & set(data.ids)
    sub = tmp / "sub.csv"
    assert main(["predict", "--run", str(run.root), "--out", str(sub)]) == 0
    labels = pd.read_csv(sub, dtype=str, keep_default_na=False).set_index("id")["rle_mask"]
    written = pd.read_csv(run.paths.pseudo / "train.csv", dtype=str, keep_default_na=False)
    for id_, text in zip(written["id"], written["rle_mask"], strict=True):
        assert labels[id_] == text  # the label is exactly the submission's mask
    assert main(["pseudo", "--run", str(run.root)]) == 1  # exists: needs --force


def test_second_round_trains_on_pseudo_images_never_validates_them(pseudo_run, tmp_path):
    run, data, folds, _ = pseudo_run
    if not run.paths.pseudo.is_dir():
        assert (
            main(
                [
                    "pseudo",
                    "--run",
                    str(run.root),
                    "--max-uncertain",
                    "0.5",
                    "--low",
                    "0.3",
                    "--high",
                    "0.7",
                ]
            )
            == 0
        )
    n_pseudo = len(load_data(run.paths.pseudo).ids)
    cfg = load_config(
        None,
        [
            *TINY_ARGS,
            "batch_size=8",
            "epochs=1",
            "max_train_batches=1",
            f"pseudo={run.paths.pseudo}",
        ],
    )
    r2 = Run(tmp_path / "round2").create(cfg)
    summary = train_fold(r2, cfg, data, folds, 0)
    assert summary.n_pseudo == n_pseudo and summary.n_val == 30
    with np.load(r2.fold(0).oof) as z:  # validation/OOF ids: labelled fold-0 ids only
        assert set(z["ids"].tolist()) == set(folds[folds["fold"] == 0]["id"])
    bad = load_config(
        None,
        [
            *TINY_ARGS,
            f"pseudo={run.root.parent / 'nope'}",
        ],
    )
    with pytest.raises(TGSError):
        train_fold(Run(tmp_path / "bad").create(bad), bad, data, folds, 0)


def applied_post_processing(th: dict) -> dict:
    """pseudo.json's record of the rule predict applies for thresholds.json `th`."""
    return PostProcessing.from_thresholds(Thresholds.from_dict(th)).describe()


def test_recorded_post_processing_is_what_predict_applies():
    base = {"threshold": 0.4, "min_area": 20, "blank_rule": True}
    assert applied_post_processing({**base, "empty_threshold": 0.3})["gate"] == "head"  # old run
    got = applied_post_processing({**base, "gate": "mean", "empty_threshold": 0.55})
    assert got == {**base, "gate": "mean", "empty_threshold": 0.55}
    assert applied_post_processing({**base, "gate": "mean", "empty_threshold": 0.0})["gate"] is None
