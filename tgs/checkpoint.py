"""Checkpoints: atomic save, and model loading that names what does not match."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from tgs.config import Config, config_from_dict
from tgs.errors import TGSError
from tgs.fileio import atomic_path
from tgs.models import SegModel, model_from_config


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save via a temporary file and rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TGSError(f"missing checkpoint: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or foreign file
        raise TGSError(f"cannot read checkpoint {path}: {e}") from None


def load_model(path: str | os.PathLike, cfg: Config | None = None) -> tuple[SegModel, Config]:
    """Rebuild the checkpoint's model (from its saved config unless `cfg`) and load its weights."""
    state = read_checkpoint(path)
    cfg = cfg or config_from_dict(state["config"])
    model = model_from_config(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise TGSError(
            f"{path} does not fit model {cfg.model!r} (encoder {cfg.encoder!r}): it was saved "
            f"from another architecture ({first[0].strip()})"
        ) from None
    return model, cfg
