"""Tiny synthetic fixtures made by the project itself; no network, no shared data needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# CI and the default run draw the same examples every time (a failure reproduces, and a green
# run stays green); HYPOTHESIS_PROFILE=explore draws new ones, to look for new failures.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=300)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REAL_ZIP = (
    Path(__file__).resolve().parents[1].parent
    / "shared/tgs-salt/tgs-salt-identification-challenge.zip"
)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A synthetic competition-layout folder: 60 train, 20 test images."""
    from tgs.data.synth import synth

    return synth(tmp_path_factory.mktemp("data") / "synth", n_train=60, n_test=20, seed=1)


@pytest.fixture(scope="session")
def competition_zip(tmp_path_factory, synth_dir) -> Path:
    """The synthetic folder zipped as Kaggle ships it (train.zip, test.zip, CSVs in one zip)."""
    from tests.helpers import pack_competition_zip

    return pack_competition_zip(synth_dir, tmp_path_factory.mktemp("zip"))


def real_zip() -> Path | None:
    for p in (REAL_ZIP, Path("../shared/tgs-salt/tgs-salt-identification-challenge.zip")):
        if p.is_file():
            return p
    return None


@pytest.fixture(scope="session")
def data(synth_dir):
    """The synthetic labelled set as arrays (60 images)."""
    from tgs.pipeline.stages import load_data

    return load_data(synth_dir)


@pytest.fixture(scope="session")
def folds(data):
    """Two coverage-stratified folds of `data` (seed 0)."""
    from tgs.data.folds import make_folds

    return make_folds(data.ids, data.masks, data.z, 2, 0)
