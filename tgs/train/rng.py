"""The global RNG states (torch, numpy, python) as plain values, saved in last.pt so a resumed
fold draws what an uninterrupted one would (checkpoints are read with `weights_only=True`)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (`seed` modulo 2**32 for numpy)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """{"torch": ByteTensor, "numpy": dict of plain values, "python": tuple}."""
    return {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore `rng_state()` (or what older checkpoints stored: numpy's state as a tuple)."""
    torch.set_rng_state(state["torch"])
    _set_numpy_state(state["numpy"])
    random.setstate(state["python"])


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state) -> None:
    if isinstance(state, dict):
        keys = state["keys"].numpy().astype(np.uint32)
        state = (state["name"], keys, state["pos"], state["has_gauss"], state["gauss"])
    np.random.set_state(state)
