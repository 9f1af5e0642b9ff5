"""One row of a fold's training history: what an epoch did (log.csv, last.pt, the callbacks)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class EpochRow:
    """Epoch `epoch` (1-based) of stage `stage`: mean loss, validation score (NaN: not
    validated), the learning rate it started with, its seconds, and the seconds its checkpoints
    took to save (set after they are written; None before)."""

    epoch: int
    stage: int
    loss: float
    val_score: float
    lr: float
    seconds: float
    save_seconds: float | None = None

    @property
    def validated(self) -> bool:
        return not math.isnan(self.val_score)

    def to_dict(self) -> dict[str, Any]:
        """As log.csv's row and last.pt's history entry (`save_seconds` once it is known)."""
        row = asdict(self)
        if row["save_seconds"] is None:
            del row["save_seconds"]
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> EpochRow:
        """A history entry of last.pt (keys it does not know are dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in known})
