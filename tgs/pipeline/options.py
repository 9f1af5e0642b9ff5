"""`RunOptions`: what `tgs run` / scripts/train_folds.sh take (job and launcher)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunOptions:
    """What `tgs run` / scripts/train_folds.sh take."""

    config: str | None = None
    data: str | None = None
    folds: list[int] | None = None
    run: str | None = None
    folds_csv: str | None = None
    resume: bool = False
    overrides: list[str] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)  # folds in parallel waves, one per GPU
    jobs: int | None = None  # folds at once in their own processes (default: the config's `jobs`)
    nproc: int = 0  # processes per fold (torchrun, DDP); 0: the config's `nproc`
    torchrun: list[str] = field(default_factory=list)  # rendezvous options for several nodes
    report: bool = True
