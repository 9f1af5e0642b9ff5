"""The kernel's check of Kaggle's image: the ranges are pyproject's, versions compare as
releases, the wrong packages are installed with the internet on and stop the kernel at once
with it off (the whole kernel, run offline, is in test_inference_kernel.py and
test_kaggle_train.py)."""

import re
import tomllib

import pytest

from tests.helpers import ROOT
from tgs.core.errors import TGSError
from tgs.kaggle.image import (
    INFERENCE,
    TRAINING,
    ensure_packages,
    inference_needs,
    problems,
    satisfies,
    version_tuple,
)


def test_the_ranges_are_pyproject_s():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ranges = dict(re.match(r"^([a-z]+)(.*)$", d).groups() for d in deps)
    for name, spec in {**TRAINING, **INFERENCE}.items():
        assert ranges[name] == spec, name
    assert inference_needs(False) == {"torch": ">=2.1"}
    assert inference_needs(True) == {"torch": ">=2.1", "timm": ">=1.0"}


@pytest.mark.parametrize(
    "version, spec, ok",
    [
        ("2.5.1+cu121", ">=2.1", True),
        ("2.1", ">=2.1", True),
        ("2.0.1", ">=2.1", False),
        ("1.0.15", ">=1.0", True),
        ("0.9.16", ">=1.0", False),
        ("2.0.8", ">=2.0,<3", True),
        ("3.0.0", ">=2.0,<3", False),
        ("1.4.18", ">=2.0", False),
        ("2.10.0", ">2.9", True),
    ],
)
def test_versions_compare_as_releases(version, spec, ok):
    assert satisfies(version, spec) is ok
    assert version_tuple("2.5.1+cu121") == (2, 5, 1)


def _image(**versions):
    return lambda name: versions.get(name)


def test_each_wrong_package_is_named():
    found = problems(TRAINING, _image(torch="2.4.0", timm="0.9.2"))
    assert found == [
        "timm 0.9.2 is installed (tgs needs timm>=1.0)",
        "albumentations is not installed (tgs needs albumentations>=2.0)",
    ]
    assert problems(TRAINING, _image(torch="2.4", timm="1.0.9", albumentations="2.0.5")) == []


def test_with_the_internet_the_wrong_ones_are_installed_then_checked_again():
    image = {"torch": "2.4.0", "timm": "1.0.9", "albumentations": "1.4.18"}
    installed = []

    def pip(specs):
        installed.extend(specs)
        image["albumentations"] = "2.0.5"

    done = ensure_packages(
        TRAINING, internet=True, version_of=image.get, is_online=lambda: True, install=pip
    )
    assert done == installed == ["albumentations>=2.0"]
    assert ensure_packages(TRAINING, internet=True, version_of=image.get, install=None) == []

    def pip_that_does_nothing(specs):
        pass

    image["albumentations"] = "1.4.18"
    with pytest.raises(TGSError, match=r"after pip install albumentations>=2.0: albumentations"):
        ensure_packages(
            TRAINING,
            internet=True,
            version_of=image.get,
            is_online=lambda: True,
            install=pip_that_does_nothing,
        )


def test_without_the_internet_the_kernel_stops_naming_what_is_wrong():
    image = _image(torch="2.0.1")

    def never(specs):
        raise AssertionError("nothing may be installed offline")

    with pytest.raises(TGSError) as e:
        ensure_packages(INFERENCE, internet=False, version_of=image, install=never)
    assert "torch 2.0.1 is installed (tgs needs torch>=2.1)" in str(e.value)
    assert "runs with the internet off, so it cannot install them" in str(e.value)
    with pytest.raises(TGSError, match="cannot reach pypi.org to install them: turn the kernel"):
        ensure_packages(
            INFERENCE, internet=True, version_of=image, is_online=lambda: False, install=never
        )
