"""What the pipeline's commands take: `RunOptions` (`tgs run`, scripts/train_folds.sh: the job
and its launcher) and `TrainOptions` (`tgs train`: one fold)."""

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
    predict: bool = True  # False: no submission (the budget reserves no predict time)


@dataclass
class TrainOptions:
    """What `tgs train` takes: one fold of a run. config, data and folds default to an existing
    run's own (its config.yaml, the data folder in meta.json, its folds.csv)."""

    fold: int
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    data: str | None = None
    folds: str | None = None  # the folds CSV
    run: str | None = None  # default runs/<config name>
    resume: bool = False
