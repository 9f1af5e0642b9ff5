"""docs/configs.md's key table is Config's: a key added, removed, retyped or given another
default or range without writing the page again (`python scripts/config_table.py`) fails here."""

import copy

from tests.helpers import ROOT
from tgs.core import config_table
from tgs.core.config import FIELDS, Config

PAGE = ROOT / "docs" / "configs.md"


def test_the_page_holds_the_table_config_makes():
    found = config_table.page_section(PAGE.read_text())
    assert found is not None, f"{PAGE} has no generated key table: run scripts/config_table.py"
    assert found == config_table.section(), "run `python scripts/config_table.py`"


def test_every_key_is_a_row_with_its_type_default_and_allowed_values():
    rows = {
        line.split(" | ")[0].strip("| `"): line.split(" | ")
        for line in config_table.key_table().splitlines()[2:]
    }
    assert list(rows) == list(FIELDS)  # every key, in Config's order
    assert rows["epochs"][1:6] == ["`int`", "`20`", "planned", ">= 1", "fixed"]
    assert rows["threads"][3:6] == ["runtime", ">= 0", "may change"]
    assert rows["gate"][1:5] == ["`str \\| None`", "`null`", "", "head, mask_max, mean"]
    assert rows["scheduler"][4] == "cosine, cosine_restarts, plateau, none"
    assert rows["min_areas"][2] == "`[0, 20, ..., 380]`"
    assert rows["encoder"][3] == "smp_only" and rows["ema"][4] == ">= 0, < 1"
    assert all(row[-1].strip(" |") for row in rows.values())  # every key says what it does


def test_a_key_changed_in_code_is_caught(monkeypatch):
    """The check is live: another default (as a code change would make) breaks the match."""
    page = PAGE.read_text()
    changed = copy.copy(FIELDS["epochs"])
    changed.default = 21
    monkeypatch.setitem(FIELDS, "epochs", changed)
    assert "| `epochs` | `int` | `21` |" in config_table.key_table()
    assert config_table.page_section(page) != config_table.section()
    assert Config().epochs == 20  # the dataclass itself is untouched
