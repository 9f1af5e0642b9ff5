"""The canned Kaggle behind the installed client (tests/bin/real_kaggle.py): `real` puts it first
on PATH with credentials it accepts; `Kaggle` reads back what the client asked of it."""

import json
import logging
import os

import pytest

from tests.kaggle_helpers import SECRET, TOKEN, install_kaggle, uploaded_version
from tgs.kaggle import client as kaggle_cli


class Kaggle:
    """The canned Kaggle's records: requests made, state."""

    def __init__(self, tmp):
        self.tmp = tmp

    def requests(self) -> list[dict]:
        log = self.tmp / "requests.jsonl"
        return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []

    def methods(self) -> list[str]:
        """The Kaggle API methods called, in order (storage up- and downloads left out)."""
        return [
            r["path"].rsplit("/", 1)[-1] for r in self.requests() if r["path"].startswith("/v1/")
        ]

    def state(self) -> dict:
        path = self.tmp / "state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def set_state(self, state: dict) -> None:
        (self.tmp / "state.json").write_text(json.dumps(state))

    def uploaded(self, ref: str, version: int = -1) -> dict:
        """{file name: its path here} of what the client uploaded as `ref`'s `version`."""
        return uploaded_version(self.state(), self.tmp / "blobs", ref, version)


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each test sees tgs's warnings (shown once per process) on its own captured stdout."""
    monkeypatch.setattr(kaggle_cli, "_warned", set())
    monkeypatch.setattr(logging.getLogger("tgs"), "handlers", [])


@pytest.fixture
def real(tmp_path, monkeypatch, competition_zip, fresh_warnings):
    bin_dir = install_kaggle(tmp_path, "real_kaggle.py")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "home").mkdir()
    (tmp_path / "output").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REAL_KAGGLE_STATE", str(tmp_path / "state.json"))
    monkeypatch.setenv("REAL_KAGGLE_LOG", str(tmp_path / "requests.jsonl"))
    monkeypatch.setenv("REAL_KAGGLE_ZIP", str(competition_zip))
    monkeypatch.setenv("REAL_KAGGLE_OUTPUT", str(tmp_path / "output"))
    monkeypatch.setenv("REAL_KAGGLE_BLOBS", str(tmp_path / "blobs"))
    accept = {"keys": {"alice": SECRET}, "tokens": {TOKEN: "alice"}}
    monkeypatch.setenv("REAL_KAGGLE_ACCEPT", json.dumps(accept))
    for var in ("KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME", "REAL_KAGGLE_MODE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("REAL_KAGGLE_LATEST", "TGS_KAGGLE_TIMEOUT", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    return Kaggle(tmp_path)
