"""Inference: device / dtype / memory format, loading checkpoints, batched prediction with TTA,
and the ensemble over folds x snapshots. Imports nothing from training.

Validation, OOF, `tgs predict`, the Kaggle kernel and the benchmarks all predict through
`predict_array`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tgs.core.config import Config
from tgs.data.inputs import InputSpec
from tgs.models.checkpoint import load_model
from tgs.predict.ensemble import mean_prediction
from tgs.predict.tta import predict_proba


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_native_bf16() -> bool:
    """True when this CPU runs bf16 matmuls/convolutions in hardware (AMX or AVX512-BF16), where
    bf16 autocast trains ~2.5x faster than fp32; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    native = any(getattr(cpu, name, lambda: False)() for name in probes)
    return native and torch.backends.mkldnn.is_available()


@dataclass
class Runtime:
    """Device-dependent settings resolved from a config."""

    device: torch.device
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format

    @classmethod
    def from_config(cls, cfg: Config, local_rank: int | None = None) -> Runtime:
        device = resolve_device(cfg.device)
        if local_rank is not None and device.type == "cuda":
            device = torch.device("cuda", local_rank)
        amp = None
        if cfg.amp and device.type == "cuda":
            amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif cfg.amp and device.type == "cpu" and cpu_native_bf16():
            amp = torch.bfloat16
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        return cls(device, amp, fmt)

    def autocast(self):
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        )

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def place(self, model: nn.Module) -> nn.Module:
        """`model` on this device in this memory format."""
        return model.to(self.device, memory_format=self.memory_format)


def load_models(files: Sequence[str | os.PathLike], rt: Runtime) -> list[nn.Module]:
    """Rebuild each checkpoint's model (never downloading weights), on rt's device, eval mode."""
    return [rt.place(load_model(f)[0]).eval() for f in files]


@torch.no_grad()
def predict_array(
    models: nn.Module | Sequence[nn.Module],
    images: np.ndarray,
    rt: Runtime,
    batch_size: int = 64,
    tta: str = "hflip",
    *,
    z: np.ndarray | None = None,
    spec: InputSpec | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images (N, 101, 101) (+ depths z (N,)) -> (float32 pixel probabilities
    (N, 101, 101), salt-present probabilities (N,) or None without a classifier head), averaged
    over `models` (one model, or an ensemble of folds x snapshots: `mean_prediction`, the head's
    only when every model has one) and the TTA's views."""
    models = [models] if isinstance(models, nn.Module) else list(models)
    spec = spec or InputSpec()
    for m in models:
        m.eval()
    out = np.zeros(images.shape, dtype=np.float32)
    cls_out = np.zeros(len(images), dtype=np.float32)
    has_cls = len(images) > 0  # until a batch comes back without the head's
    for s in range(0, len(images), batch_size):
        zs = None if z is None else z[s : s + batch_size]
        x = rt.to_input(spec.make(images[s : s + batch_size], zs))
        preds = []
        for model in models:
            with rt.autocast():
                probs, cls = predict_proba(model, x, tta)
            preds.append((probs.cpu().numpy(), None if cls is None else cls.cpu().numpy()))
        probs, cls = mean_prediction(preds)
        out[s : s + batch_size] = probs
        if cls is None:
            has_cls = False
        else:
            cls_out[s : s + batch_size] = cls
    return out, cls_out if has_cls else None
