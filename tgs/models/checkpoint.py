"""Checkpoints: atomic save, safe reading (`weights_only=True`), and model loading that never
downloads weights and names what does not match."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tgs.core import commands
from tgs.core.config import Config, config_from_dict
from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.fileio import atomic_path
from tgs.models.registry import SegModel, model_from_config
from tgs.run.layout import fold_of


def _numpy_globals() -> list:
    """What a numpy RNG state (np.random.get_state()) pickles to: allowed in checkpoints that
    tgs wrote before it stored that state as plain tensors."""
    core = getattr(np, "_core", None) or np.core
    out = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out.append(dtypes.UInt32DType)
    return out


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """torch.save via a temporary file and rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's dict, read with `weights_only=True`: tensors, numbers, strings and
    containers only, so a file from someone else cannot run code. Anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise TGSError(f"missing checkpoint: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?i)unsupported global:?\s+(?:GLOBAL\s+)?(\S+)", str(e))
        if found is None:  # not a torch pickle at all: truncated or junk
            raise DamagedFileError(
                f"cannot read checkpoint {path}: not a PyTorch checkpoint (truncated or another "
                f"format){_retrain_hint(path)}"
            ) from None
        reason = f"it references {found.group(1)}"
        raise TGSError(
            f"refusing {path}: it holds more than weights and plain values ({reason}); tgs "
            "never unpickles arbitrary objects from a checkpoint"
        ) from None
    except Exception as e:  # truncated or foreign file
        said = str(e).split(". ")[0]
        raise DamagedFileError(
            f"cannot read checkpoint {path}: {said}{_retrain_hint(path)}"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise DamagedFileError(
            f"{path} is not a tgs checkpoint (no 'model' weights){_retrain_hint(path)}"
        )
    return state


def _retrain_hint(path: Path) -> str:
    """For a checkpoint of a run's fold: how to train that fold again."""
    found = fold_of(path)
    if found is None:
        return ""
    return f"; train the fold again: delete {path.parent} and run `{commands.resume_run(found[0])}`"


def load_model(path: str | os.PathLike, cfg: Config | None = None) -> tuple[SegModel, Config]:
    """Rebuild the checkpoint's model (from its saved config unless `cfg`) with no pretrained
    weights (the checkpoint holds them all, so nothing is downloaded), then load its weights."""
    state = read_checkpoint(path)
    cfg = cfg or config_from_dict(state["config"])
    model = model_from_config(cfg, pretrained=False)
    _load_state(model, state, cfg, str(path))
    return model, cfg


def load_weights(model: torch.nn.Module, path: str | os.PathLike, cfg: Config, what: str) -> None:
    """Load checkpoint `path`'s weights into `model` (built from `cfg`), e.g. to start a run
    from another's (`init_from`); TGSError naming `what` when they do not fit."""
    _load_state(model, read_checkpoint(path), cfg, what)


def _load_state(model: torch.nn.Module, state: dict[str, Any], cfg: Config, what: str) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[1:2] or [str(e)]
        raise TGSError(
            f"{what} does not fit model {cfg.model!r} (encoder {cfg.encoder!r}): it was saved "
            f"from another architecture ({first[0].strip()})"
        ) from None
