"""Typed records of a run folder's JSON files: one reader (`read` / `from_dict`) and one writer
(`write` / `to_dict`) per file. Readers raise TGSError naming the file and the command that
rebuilds it when the file is missing, not JSON, or a field has the wrong type.

    RUN/thresholds.json      Thresholds   the post-processing searched on the OOF
    RUN/plan.json            Plan         a budgeted run's measured epoch time and epochs
    RUN/foldK/plan.json      FoldRefits   the fold's budget refits (latest, earlier nested)
    RUN/foldK/summary.json   FoldSummary  how the fold trained and made its OOF
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tgs.core.errors import DamagedFileError, TGSError
from tgs.core.fileio import write_json

SUBMISSIONS_DIR = "submissions"  # where submissions and their manifests go by default
KAGGLE_STAGING_DIR = "build/kaggle"  # push-kernel's staging folder (one subfolder per run)

R = TypeVar("R", bound="JsonFile")


# -- field checks ----------------------------------------------------------------------------
def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _dict(v: Any) -> bool:
    return isinstance(v, dict)


def _list_of(check):
    def ok(v: Any) -> bool:
        return isinstance(v, list) and all(check(x) for x in v)

    plural = {"_int": "integers", "_str": "strings", "_number": "numbers", "_dict": "objects"}
    ok.__name__ = f"a list of {plural[check.__name__]}"
    return ok


_EXPECTED = {"_number": "a number", "_int": "an integer", "_bool": "true or false"}
_EXPECTED.update(_str="a string", _dict="an object")


def _expected(check) -> str:
    return _EXPECTED.get(check.__name__, check.__name__)


def _spec(check, default: Any = dataclasses.MISSING, key: str | None = None, **meta: Any):
    """A record field: its JSON `key` (default: the attribute name), the `check` its JSON
    value must pass, and `keep_none` (write null rather than leave the key out)."""
    return field(default=default, metadata={"check": check, "key": key, **meta})


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
    REBUILD: ClassVar[str] = ""  # the command that rebuilds the file; {dir}: its folder

    @classmethod
    def rebuild_hint(cls, path: Path) -> str:
        return cls.REBUILD.format(dir=path.parent, run=path.parent.parent)

    @classmethod
    def read(cls: type[R], path: str | os.PathLike, rebuild: str | None = None) -> R:
        """The record in `path`; TGSError naming the file and `rebuild` (default: the record's
        REBUILD command) when it is missing, not JSON, or has a wrong field."""
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


class Record(JsonFile):
    """Base of the typed records: a dataclass whose fields carry a JSON key and a check."""

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
            key = f.metadata["key"] or f.name
            known.add(key)
            if key not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise TGSError(f"field {key!r} missing")
                continue
            v = data[key]
            if v is not None and not f.metadata["check"](v):
                raise TGSError(
                    f"field {key!r} should be {_expected(f.metadata['check'])}, got {v!r}"
                )
            convert = f.metadata.get("load")
            values[f.name] = convert(v) if convert and v is not None else v
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
            dump = f.metadata.get("dump")
            out[f.metadata["key"] or f.name] = dump(v) if dump and v is not None else v
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}


# -- thresholds.json -------------------------------------------------------------------------
@dataclass(kw_only=True)
class Thresholds(Record):
    """thresholds.json: the post-processing searched on a run's (or blend's) OOF, its CV and
    how that OOF was made. `gate` None: no gate score was searched (no head); files written
    before `gate` existed lack it and gate on the head (`PostProcessing.from_thresholds`)."""

    FILE: ClassVar[str] = "thresholds.json"
    REBUILD: ClassVar[str] = "python -m tgs threshold --run {dir}"

    threshold: float = _spec(_number)
    min_area: int = _spec(_int)
    empty_threshold: float | None = _spec(_number, None)
    gate: str | None = _spec(_str, None, keep_none=True)
    blank_rule: bool | None = _spec(_bool, None)
    cv: float | None = _spec(_number, None)
    cv_at_half: float | None = _spec(_number, None, key="cv_at_0.5")
    all_empty: float | None = _spec(_number, None)
    n_images: int | None = _spec(_int, None)
    folds: list[int] | None = _spec(_list_of(_int), None)
    complete: bool | None = _spec(_bool, None)
    tta: str | None = _spec(_str, None)
    models: list[str] | None = _spec(_list_of(_str), None)
    members_cv: list[float] | None = _spec(_list_of(_number), None)  # blends: members' CVs
    extra: dict = field(default_factory=dict)

    def require_cv(self, path: str | os.PathLike) -> float:
        """The searched CV (TGSError naming `path` when the file has none)."""
        if self.cv is None:
            raise TGSError(f"{path} has no cv: run `{self.rebuild_hint(Path(path))}`")
        return self.cv


# -- plan.json and foldK/plan.json -------------------------------------------------------------
_PLAN_CHECKS = {"epochs": _int, "stage2_epochs": _int, "epoch_seconds": _number}


def _check_plan(data: Any, where: str = "") -> dict:
    if not isinstance(data, dict):
        raise TGSError(f"{where}expected a JSON object, got {type(data).__name__}")
    for key, check in _PLAN_CHECKS.items():
        if data.get(key) is not None and not check(data[key]):
            raise TGSError(f"{where}field {key!r} should be {_expected(check)}, got {data[key]!r}")
    return data


@dataclass
class Plan(JsonFile):
    """plan.json: a budgeted run's schedule as `tgs.budget.plan` lays it out (the fields are the
    budget's; epochs, stage2_epochs and epoch_seconds are checked). `values` keeps them all in
    the order written."""

    FILE: ClassVar[str] = "plan.json"
    REBUILD: ClassVar[str] = "python -m tgs run ... --run {dir} (budget_minutes > 0)"

    values: dict

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        return cls(dict(_check_plan(data)))

    def to_dict(self) -> dict:
        return dict(self.values)

    @property
    def epochs(self) -> int | None:
        return self.values.get("epochs")

    @property
    def stage2_epochs(self) -> int:
        return self.values.get("stage2_epochs") or 0


@dataclass
class FoldRefits(JsonFile):
    """foldK/plan.json: a budgeted fold's refits of its schedule, oldest first. The file holds
    the latest (which sets the fold's schedule) with the earlier ones nested under "previous"."""

    FILE: ClassVar[str] = "plan.json"
    REBUILD: ClassVar[str] = "python -m tgs train --run {run} --fold K --resume"

    refits: list[dict]

    @classmethod
    def from_dict(cls, data: Any) -> FoldRefits:
        out, r = [], data
        while r:
            _check_plan(r)
            if r.get("previous") is not None and not isinstance(r["previous"], dict):
                raise TGSError(f"field 'previous' should be an object, got {r['previous']!r}")
            out.insert(0, {key: v for key, v in r.items() if key != "previous"})
            r = r.get("previous")
        return cls(out)

    def to_dict(self) -> dict | None:
        """The latest refit with the earlier ones nested under "previous" (None: no refit)."""
        nested = None
        for r in self.refits:
            nested = {**r, "previous": nested} if nested else dict(r)
        return nested


# -- foldK/summary.json ----------------------------------------------------------------------
@dataclass(kw_only=True)
class FoldSummary(Record):
    """foldK/summary.json: how fold K trained and made its OOF (written when it finished)."""

    FILE: ClassVar[str] = "summary.json"
    REBUILD: ClassVar[str] = "python -m tgs train --run {run} --fold K --resume"

    fold: int | None = _spec(_int, None)
    best_epoch: int | None = _spec(_int, None)
    best_val_score: float | None = _spec(_number, None)
    oof_score: float | None = _spec(_number, None, key="oof_score_0.5")  # OOF at p > 0.5
    tta: str | None = _spec(_str, None)
    models: list[str] | None = _spec(_list_of(_str), None)
    n_train: int | None = _spec(_int, None)
    n_pseudo: int | None = _spec(_int, None)
    n_val: int | None = _spec(_int, None)
    epochs: int | None = _spec(_int, None)
    train_seconds: float | None = _spec(_number, None)
    ddp_world_size: int | None = _spec(_int, None)
    ddp_weights_identical: bool | None = _spec(_bool, None)
    extra: dict = field(default_factory=dict)

    @property
    def oof_score_half(self) -> float | None:
        """The OOF score at p > 0.5 (`oof_score_hflip_0.5` in summaries of early releases)."""
        return (
            self.oof_score if self.oof_score is not None else self.extra.get("oof_score_hflip_0.5")
        )


# -- blend.json ------------------------------------------------------------------------------
@dataclass(kw_only=True)
class BlendMember(Record):
    """One run of a blend: its folder, weight, the TTA, folds and models its OOF was made with,
    and its CV."""

    run: str = _spec(_str)
    weight: float = _spec(_number)
    tta: str = _spec(_str)
    folds: list[int] | None = _spec(_list_of(_int), None, keep_none=True)
    models: list[str] = _spec(_list_of(_str))
    cv: float = _spec(_number)
    extra: dict = field(default_factory=dict)


def _members(v: list) -> list[BlendMember]:
    return [BlendMember.from_dict(m) for m in v]


@dataclass(kw_only=True)
class Blend(Record):
    """BLEND/blend.json: the members, the data folder the blend was searched on and its gate
    (written last: a blend folder with it is complete)."""

    FILE: ClassVar[str] = "blend.json"
    REBUILD: ClassVar[str] = "python -m tgs blend RUN RUN ... --out {dir}"

    members: list[BlendMember] = _spec(
        _list_of(_dict), load=_members, dump=lambda ms: [m.to_dict() for m in ms]
    )
    data: str = _spec(_str)
    gate: str | None = _spec(_str, None, keep_none=True)
    extra: dict = field(default_factory=dict)


# -- submission manifests ----------------------------------------------------------------------
@dataclass(kw_only=True)
class Manifest(Record):
    """SUB.json beside a submission SUB.csv: what made it. One schema for `tgs predict` (run,
    folds, models, tta, warning, config), a blend (blend, members) and a Kaggle kernel's output
    (as predict's, plus kernel and kernel_output); `tgs kaggle submit` appends to `kaggle`."""

    REBUILD: ClassVar[str] = "python -m tgs predict --run RUN"

    submission: str = _spec(_str)
    run: str | None = _spec(_str, None)
    blend: str | None = _spec(_str, None)
    members: list[dict] | None = _spec(_list_of(_dict), None)
    folds: list[int] | None = _spec(_list_of(_int), None)
    models: list[str] | None = _spec(_list_of(_str), None)
    tta: str | None = _spec(_str, None)
    warning: str | None = _spec(_str, None, keep_none=True)
    config: dict | None = _spec(_dict, None)
    data: str | None = _spec(_str, None)
    cv: float | None = _spec(_number, None)
    thresholds: Thresholds | None = _spec(
        _dict, None, load=Thresholds.from_dict, dump=Thresholds.to_dict
    )
    n_images: int | None = _spec(_int, None)
    empty_predicted: float | None = _spec(_number, None)
    commit: str | None = _spec(_str, None)
    created: str | None = _spec(_str, None)
    seconds: float | None = _spec(_number, None)
    model_seconds: float | None = _spec(_number, None)
    kernel: str | None = _spec(_str, None)
    kernel_output: str | None = _spec(_str, None)
    made: str | None = _spec(_str, None)
    kaggle: list[dict] | None = _spec(_list_of(_dict), None)
    extra: dict = field(default_factory=dict)

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
@dataclass(kw_only=True)
class StageInfo(Record):
    """DATASET/tgs-stage.json: the staged run's name and models, the bundled smp version (None:
    not bundled), the commit, when it was staged and its stage id (also written into the
    kernel's script, which stops when the dataset Kaggle attached holds another)."""

    FILE: ClassVar[str] = "tgs-stage.json"
    REBUILD: ClassVar[str] = "python -m tgs kaggle push-kernel RUN --dry-run"

    run: str = _spec(_str)
    models: list[str] = _spec(_list_of(_str))
    smp: str | None = _spec(_str, None, key="segmentation_models_pytorch", keep_none=True)
    commit: str | None = _spec(_str, None)
    staged: str | None = _spec(_str, None)
    stage_id: str | None = _spec(_str, None)
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class TrainStatus(Record):
    """tgs-train.json in a training kernel's output: whether its run finished (a submission
    made), was stopped at the session limit, or continued an earlier kernel's run; the GPU it
    had, its time and the output's size against Kaggle's limit; where its session clock
    started (`session_from`) and the set-up time before the kernel script, when measured."""

    FILE: ClassVar[str] = "tgs-train.json"
    REBUILD: ClassVar[str] = "python -m tgs kaggle kernel-output RUN (download it again)"

    run: str = _spec(_str)
    finished: bool = _spec(_bool)
    stopped_at_session_limit: bool = _spec(_bool)
    exit_code: int = _spec(_int)
    resumed: bool = _spec(_bool)
    gpu: str | None = _spec(_str, None, keep_none=True)
    seconds: float = _spec(_number)
    submission: str | None = _spec(_str, None, keep_none=True)
    output_gb: float = _spec(_number)
    output_limit_gb: float = _spec(_number)
    session_from: str | None = _spec(_str, None)
    setup_seconds: float | None = _spec(_number, None)
    extra: dict = field(default_factory=dict)


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
