"""The layers of tgs stay honest: `lint-imports` (import-linter) keeps pyproject.toml's contracts
(each layer imports only from the layers below it; no import cycle between sibling modules or
packages at any depth, imports inside functions included), and every subpackage is in a layer."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT

needs_import_linter = pytest.mark.skipif(
    importlib.util.find_spec("importlinter") is None,
    reason="import-linter is not installed (pip install -r requirements-dev.txt)",
)


def _contracts() -> dict[str, dict]:
    """pyproject.toml's import-linter contracts by type."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["type"]: c for c in config["contracts"]}


def _lint_imports() -> Path:
    """The `lint-imports` command beside this interpreter (else the one on PATH)."""
    beside = Path(sys.executable).parent / "lint-imports"
    return beside if beside.is_file() else Path(shutil.which("lint-imports") or "lint-imports")


@needs_import_linter
def test_lint_imports_keeps_every_contract():
    """Both contracts kept on today's code (--no-cache: writes nothing into the checkout)."""
    out = subprocess.run(
        [str(_lint_imports()), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 2 kept, 0 broken." in out.stdout


def test_every_subpackage_is_in_a_layer_and_cycles_are_checked_everywhere():
    """A new subpackage of tgs must be given a layer (else the layers contract says nothing
    about it); the cycle contract covers the whole package."""
    contracts = _contracts()
    layers = contracts["layers"]
    assert layers["containers"] == ["tgs"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    packages = {p.parent.name for p in (ROOT / "tgs").glob("*/__init__.py")}
    assert packages == named, f"not in a layer: {packages - named}; gone: {named - packages}"
    assert contracts["acyclic_siblings"]["ancestors"] == ["tgs"]
