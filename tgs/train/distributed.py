"""torch.distributed helpers: `torchrun ... -m tgs train` trains one fold on several processes.

One process per GPU (nccl) or CPU process (gloo). Each rank trains on a disjoint shard of every
epoch (DistributedSampler with set_epoch), gradients are averaged by DistributedDataParallel,
validation is sharded without padding duplicates and gathered exactly, and rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

if TYPE_CHECKING:
    from tgs.predict.inference import Runtime


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group torchrun describes in the environment; a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return Dist(rank, world, local)


def shutdown_distributed(d: Dist) -> None:
    """Leave the process group joined by `init_distributed` (a no-op for one process)."""
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def mean_across(d: Dist, value: float, weight: float = 1.0) -> float:
    """Weighted mean of a float over ranks."""
    if not d.enabled:
        return value
    t = torch.tensor([value * weight, weight], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1])


def gather_objects(d: Dist, obj):
    """List of every rank's `obj` (rank order); [obj] for one process."""
    if not d.enabled:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def weights_identical(d: Dist, model: torch.nn.Module) -> bool:
    """True when every rank holds bit-identical parameters (checked via a gathered checksum)."""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    sums = gather_objects(d, (float(flat.sum()), float((flat * flat).sum()), flat[:64].tolist()))
    return all(s == sums[0] for s in sums)


def wrap_ddp(model: torch.nn.Module, d: Dist, rt: Runtime, unused: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around `model` when distributed (SyncBatchNorm only on CUDA;
    find_unused_parameters when `unused` (some epochs freeze weights) or a probe step leaves
    some parameter without a gradient)."""
    if not d.enabled:
        return model
    if rt.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [rt.device.index] if rt.device.type == "cuda" else None
    unused = unused or has_unused_parameters(model, rt)
    return DDP(model, device_ids=ids, find_unused_parameters=unused)


def has_unused_parameters(model: torch.nn.Module, rt: Runtime) -> bool:
    """Run one eval-mode probe batch and report whether any parameter gets no gradient."""
    was_training = model.training
    model.eval()
    x = torch.randn(2, model_in_channels(model), 101, 101, device=rt.device)
    mask, cls = model(x, with_cls=True)
    (mask.mean() + (cls.mean() if cls is not None else 0)).backward()
    unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


def model_in_channels(model: torch.nn.Module) -> int:
    """Input channels of the first convolution of `model`."""
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return first.in_channels
