"""Typed records that cross module boundaries: trial statuses, one epoch's figures, one trial report; and the
records a run folder keeps (a trial's user attributes, ``manifest.json``, ``front_eval.json``).

A trial (in a Ray worker) sends :class:`TrialReport` records to the driver through ``ray.tune.report``; the
driver's searcher, progress display and result tables read them back with :meth:`TrialReport.from_result`.
Ray Tune needs flat metric dictionaries (ASHA reads ``val_acc`` at the top level), so the record has one
flat dictionary form, defined here and nowhere else. Torch-free: the driver validates before importing torch.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, fields
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError


class TrialStatus(str, enum.Enum):
    """What became of a trial (the ``status`` column of the tables)."""

    COMPLETE = "complete"  #: trained for every epoch of the recipe
    PRUNED = "pruned"  #: stopped early by ASHA: its low-fidelity accuracy never enters the front
    FAILED = "failed"  #: raised, reached a non-finite loss, ran out of memory, or its worker was lost
    INFEASIBLE = "infeasible"  #: over a constraint: recorded, never trained, not counted in the budget
    INTERRUPTED = "interrupted"  #: left running by a killed search; run again under a new number
    RUNNING = "running"  #: proposed and not finished yet

    @property
    def finished(self) -> bool:
        """Counts against the trial budget."""
        return self in (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class EpochStats:
    """One epoch of one trial, as measured by the trial.

    ``val_top5``: the right class among the five highest scores (among all of them with fewer than five
    classes); NaN where not measured (records made before it was). No training top-5: training accuracy is
    measured on augmented images under a moving model, a rough signal that a top-5 would not sharpen.
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    epoch_s: float
    train_images_per_s: float
    val_top5: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochStats:
        """Read the fields of this class from ``d`` (other keys ignored; missing optional ones default)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


EPOCH_KEYS = tuple(f.name for f in fields(EpochStats))
#: the keys every epoch record has (records older than top-5 lack ``val_top5``)
REQUIRED_EPOCH_KEYS = tuple(f.name for f in fields(EpochStats) if f.default is dataclasses.MISSING)


@dataclass(frozen=True)
class TrialReport:
    """One report of a running trial to the driver: an epoch, the last epoch, or a failure.

    Attributes:
        epoch: the epoch just finished (``None`` when the trial failed before finishing one).
        completed: the recipe's last epoch (the report carries the checkpoint).
        failed: the trial raised; ``reason`` is the first line, ``traceback`` the whole text.
        disk_full: it failed because a file system was full (its checkpoint under ``--storage-path``): not the
            arch's failure, so the search stops and a resume runs it again (issue 22).
        node, node_id, device: where it ran.
        startup_s: trial start to its first training step, measured in the trial's process.
        train_s: trial start to the end of its last epoch.
        latency_ms: the arch's measured latency (``nas_attn.latency``), when an objective.
        params, flops: the arch's counted cost (``nas_attn.complexity``), in every report after the trial built
            it: where the driver did not count it, the searcher learns it from here.
    """

    epoch: EpochStats | None = None
    completed: bool = False
    failed: bool = False
    disk_full: bool = False
    reason: str = ""
    traceback: str = ""
    node: str = ""
    node_id: str = ""
    device: str = ""
    startup_s: float | None = None
    train_s: float | None = None
    #: median forward latency at batch 1 on the trial's device (only when a space asks for it)
    latency_ms: float | None = None
    params: int | None = None
    flops: int | None = None

    def to_result(self) -> dict[str, Any]:
        """The flat dictionary given to ``ray.tune.report`` (epoch figures at the top level)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "epoch"}
        out = {k: v for k, v in out.items() if v is not None}
        if self.epoch is not None:
            out.update(self.epoch.to_dict())
        return out

    @classmethod
    def from_result(cls, result: dict[str, Any] | None) -> TrialReport:
        """Read a result dictionary back (Tune adds its own keys, which are ignored)."""
        result = result or {}
        epoch = EpochStats.from_dict(result) if all(k in result for k in REQUIRED_EPOCH_KEYS) else None
        kw = {f.name: result[f.name] for f in fields(cls) if f.name != "epoch" and f.name in result}
        return cls(epoch=epoch, **kw)


class _TuneConfig:
    """A record handed to a Ray Tune trial as its ``config``: a flat dictionary of its fields."""

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """Read this record's fields from ``config`` (Tune's own keys ignored; missing ones default)."""
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


@dataclass(frozen=True)
class TrialConfig(_TuneConfig):
    """What the searcher hands a trial (Ray Tune's ``config``): the arch, its number and seed, and its cost where
    the driver counted it (a space with constraints: ``SearchSpace.counts_before_training``; else the trial
    counts it)."""

    arch: str  #: the arch as JSON
    trial_number: int
    seed: int
    params: int | None = None
    flops: int | None = None
    #: weight inheritance: the vanilla trial's checkpoint to start from, and the epochs to fine-tune for
    start_from: str | None = None
    epochs: int | None = None



@dataclass(frozen=True)
class SupernetConfig(_TuneConfig):
    """What the one-shot strategy hands its supernet trial (Ray Tune's ``config``)."""

    seed: int
    epochs: int
    #: the last epoch's checkpoint of a killed search, to go on from (``None``: from the start)
    resume: str | None = None



@dataclass(frozen=True)
class SupernetReport:
    """One epoch of the supernet's training, reported by its trial to the driver (``ray.tune.report``); a
    failure is reported as a :class:`TrialReport` instead."""

    epoch: int
    train_loss: float
    epoch_s: float
    completed: bool = False
    node: str = ""
    node_id: str = ""
    device: str = ""

    def to_result(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> SupernetReport | None:
        """``None`` where the result is not an epoch (a failure report)."""
        if not all(k in result for k in ("epoch", "train_loss", "epoch_s")):
            return None
        return cls(**{f.name: result[f.name] for f in fields(cls) if f.name in result})


@dataclass(frozen=True)
class SupernetCheckpoint:
    """The supernet's last checkpoint, kept as the study's user attribute :data:`SUPERNET_CHECKPOINT`: where a
    killed search goes on from, and what the scoring loads once ``epoch == epochs``."""

    epoch: int
    epochs: int
    checkpoint: str

    @classmethod
    def of(cls, study: Any) -> SupernetCheckpoint | None:
        saved = study.user_attrs.get(SUPERNET_CHECKPOINT)
        if not isinstance(saved, dict):
            return None
        try:
            return cls(int(saved["epoch"]), int(saved["epochs"]), str(saved["checkpoint"]))
        except (KeyError, TypeError, ValueError):  # a damaged attribute: trained again from the start
            return None

    def save_on(self, study: Any) -> None:
        study.set_user_attr(SUPERNET_CHECKPOINT, dataclasses.asdict(self))

    @property
    def done(self) -> bool:
        return self.epoch == self.epochs


#: the study's user attribute holding :class:`SupernetCheckpoint`
SUPERNET_CHECKPOINT = "supernet"


@dataclass(frozen=True)
class RetrainPicks:
    """The predictions picked for retraining from scratch (trial numbers, in the order picked) and the newest
    prediction they were picked among; kept as the study's user attribute :data:`RETRAIN_PICKS`."""

    picks: list[int]
    upto: int

    @classmethod
    def of(cls, study: Any) -> RetrainPicks | None:
        saved = study.user_attrs.get(RETRAIN_PICKS)
        if not isinstance(saved, dict):
            return None
        try:
            return cls([int(n) for n in saved["picks"]], int(saved["upto"]))
        except (KeyError, TypeError, ValueError):  # a damaged attribute: picked again
            return None

    def save_on(self, study: Any) -> None:
        study.set_user_attr(RETRAIN_PICKS, dataclasses.asdict(self))


#: the study's user attribute holding :class:`RetrainPicks`
RETRAIN_PICKS = "retrain_picks"


@dataclass(frozen=True)
class ArchScore:
    """One arch scored on the supernet by a scoring task: its validation figures and counted cost, or why the
    scoring failed (``failed``: the first line as ``reason``, the whole ``traceback``)."""

    val_acc: float = math.nan
    val_top5: float = math.nan
    val_loss: float = math.nan
    params: int | None = None
    flops: int | None = None
    score_s: float | None = None
    failed: bool = False
    #: the task could not score at all (the supernet not loaded, its worker lost): not the arch's failure, so
    #: the arch is recorded as interrupted and scored again
    task_failed: bool = False
    reason: str = ""
    traceback: str = ""
    node: str = ""
    node_id: str = ""
    device: str = ""

    @classmethod
    def failure(cls, report: TrialReport, task: bool = False) -> ArchScore:
        return cls(failed=True, task_failed=task, reason=report.reason, traceback=report.traceback,
                   node=report.node, node_id=report.node_id, device=report.device)


# -- what a run folder keeps: the trials' user attributes, manifest.json, front_eval.json -----------------------

@dataclass(frozen=True)
class TrialAttrs:
    """The Optuna user attributes of one trial, in the run's study (``optuna.journal``).

    Written only by :class:`nas_attn.searcher.StudySearcher` (:meth:`set_on`, a few fields at a time: on asking,
    on the first epoch, on a checkpoint, on a restart, on the outcome); read only through :meth:`of` (the
    tables, the front's evaluation, the progress line). Every field is optional: a trial carries only what was
    known when it stopped, and attributes that older runs wrote and nothing reads (``vanilla``, ``rerun_of``)
    are ignored.
    """

    arch: str | None = None  #: the arch as JSON
    params: int | None = None
    flops: int | None = None
    tune_trial_id: str | None = None
    seed: int | None = None
    status: str | None = None  #: a :class:`TrialStatus` value, set with the outcome
    reason: str | None = None
    history: tuple[EpochStats, ...] = ()  #: the epochs trained, in order
    epochs_run: int | None = None
    val_acc_best: float | None = None
    val_acc_final: float | None = None
    val_top5_final: float | None = None
    wall_s: float | None = None  #: the driver's view: asked → told
    launch_s: float | None = None  #: the driver's view of start-up: asked → first training step
    node: str | None = None
    node_id: str | None = None
    device: str | None = None
    startup_s: float | None = None
    train_s: float | None = None
    latency_ms: float | None = None
    checkpoint: str | None = None  #: where Tune stored the final checkpoint (a path in the run folder, or a URI)
    restarts: int | None = None  #: times Tune ran it again after a lost worker
    traceback: str | None = None  #: the traceback file, relative to the run folder
    #: how its accuracy was obtained (:data:`nas_attn.strategy.EVALUATIONS`): ``scratch`` (trained from scratch
    #: with the recipe; also ``None``, in runs older than the strategies), ``inherit`` (fine-tuned from the
    #: vanilla trial's weights) or ``oneshot`` (scored by the supernet): the last two are predictions
    evaluation: str | None = None
    #: a retraining from scratch of the predicted front: the number of the trial whose prediction it checks
    retrain_of: int | None = None

    @classmethod
    def of(cls, trial: Any, history: bool = True) -> TrialAttrs:
        """The attributes of an Optuna trial (frozen or live); unknown keys are ignored. ``history=False``
        leaves the epochs out (a status or a cost read for every trial, every second)."""
        attrs = trial.user_attrs
        kw = {f.name: attrs[f.name] for f in fields(cls) if f.name in attrs}
        kw["history"] = tuple(EpochStats.from_dict(h) for h in attrs.get("history") or ()) if history else ()
        return cls(**kw)

    @staticmethod
    def set_on(trial: Any, **values: Any) -> None:
        """Set ``values`` (names of this record's fields) as user attributes of a live Optuna trial."""
        unknown = set(values) - set(TRIAL_ATTRS)
        if unknown:
            raise TypeError(f"not trial attributes: {', '.join(sorted(unknown))}")
        for name, value in values.items():
            if name == "history":
                value = [h.to_dict() for h in value]
            trial.set_user_attr(name, value)

    def to_dict(self) -> dict[str, Any]:
        """Every field (``history`` as a list of epoch dictionaries)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["history"] = [h.to_dict() for h in self.history]
        return out


TRIAL_ATTRS = tuple(f.name for f in fields(TrialAttrs))


class _Persisted(BaseModel):
    # strict: these files are written by nas-attn alone, so another type means a damaged or hand-edited file;
    # other keys are allowed and kept (a newer or older version's), only what is read is checked
    model_config = ConfigDict(extra="allow", strict=True)


class Attempt(_Persisted):
    """One attempt (the first run, or a resume) in ``manifest.json``."""

    command: list[str] | None = None
    started: str | None = None
    ended: str | None = None  #: ``None`` while it runs, or when it was killed without notice (SIGKILL)
    status: str | None = None  #: ``finished``, ``interrupted``, ``failed``; ``killed`` set by the next attempt
    counts: dict[str, int] | None = None  #: the study's trials by status when the attempt stopped
    search_s: float | None = None
    reason: str | None = None  #: why it failed

    @property
    def open(self) -> bool:
        """Started and never closed: running now, or killed without notice."""
        return self.ended is None and self.status is None


class DatasetRecord(_Persisted):
    """The data a run trained on, in ``manifest.json`` (what its heatmaps are drawn from)."""

    name: str | None = None
    source: str | None = None
    train: int | None = None
    val: int | None = None
    test: int | None = None
    input_size: int | None = None
    stored_side: int | None = None
    cache: str | None = None
    cache_key: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    seed: int | None = None


class Manifest(_Persisted):
    """``RUN_DIR/manifest.json``: what ran (command, space, versions, commit, data, budget, resources) and every
    attempt's start and end.

    Written only by :mod:`nas_attn.manifest` (at the start and the end of each attempt); read only through
    :meth:`nas_attn.runfolder.RunFolder.read_manifest` (the resume checks, the search, the tables, the
    heatmaps, the export, the dashboard). Every field is optional, so that older manifests load.
    """

    space: str | None = None
    space_file: str | None = None
    space_sha256: str | None = None
    run_id: str | None = None
    study_name: str | None = None
    storage: str | None = None
    objectives: Any = None  #: checked below, with the objectives a space may name
    directions: list[str] | None = None
    versions: dict[str, str | None] | None = None
    git_commit: str | None = None
    tune_storage: str | None = None
    dataset: DatasetRecord | None = None
    budget: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    sampler: str | None = None
    encoding: str | None = None
    asha: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    status: str | None = None  #: the last attempt's
    attempts: list[Attempt] = []
    #: ``nas-attn train``: the arch every trial trains, as given (``None``: a search)
    arch: str | None = None
    #: ``nas-attn train``: the ``--recipe`` settings it started with (a resume must give the same)
    recipe_changes: dict[str, Any] | None = None
    #: a ``timm:``/``torchvision:``/``py:`` backbone's automatic numbering: ``backbone``, ``positions`` (how
    #: many), ``digest`` (:func:`nas_attn.backbones.library.numbering_digest`); a resume must number alike
    numbering: dict[str, Any] | None = None
    #: how candidates were evaluated (:class:`nas_attn.strategy.Strategy` as a dict; ``None``: from scratch)
    strategy: dict[str, Any] | None = None

    @field_validator("arch")
    @classmethod
    def _an_arch(cls, text: str | None) -> str | None:
        if text is None:
            return text
        if not text.lstrip().startswith("{"):  # Arch.from_json would read it as a file's path
            raise ValueError(f"not an arch's JSON object (got {text[:40]!r})")
        try:
            Arch.from_json(text)
        except NasAttnError as exc:
            raise ValueError(str(exc).removeprefix("arch: ")) from None
        return text

    @model_validator(mode="after")
    def _known_objectives(self) -> Manifest:
        from nas_attn.space.schema import OBJECTIVES  # here: the schema imports the backbones

        o = self.objectives
        if o is not None and not (isinstance(o, list) and o and all(isinstance(x, str) and x in OBJECTIVES
                                                                     for x in o)):
            raise ValueError(f"objectives must be a list of {', '.join(OBJECTIVES)}, got {o!r}")
        return self

    @property
    def objective_names(self) -> list[str]:
        """The run's objectives (runs older than the field: accuracy and FLOPs)."""
        return list(self.objectives or ["val_acc", "flops"])

    @property
    def ran_trials(self) -> bool:
        """An attempt ended, or recorded counts (a killed one, closed by the next): trials may be in the study."""
        return any(a.ended is not None or a.counts for a in self.attempts)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


Accuracy = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Reevaluation(_Persisted):
    """``--reevaluate-front``: the seeds run and the mean ± std of the accuracies they reached."""

    seeds: Annotated[int, Field(ge=1)]
    val_mean: Accuracy
    val_std: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    test_mean: Accuracy
    test_std: Annotated[float, Field(ge=0, allow_inf_nan=False)]


class FrontEval(_Persisted):
    """One trial's entry in ``RUN_DIR/front_eval.json`` (``{"<trial number>": FrontEval}``): measurements made
    after the search on front trials, kept beside the study because Optuna does not let a finished trial be
    updated.

    Written only by :func:`nas_attn.results.save_front_eval` (for :mod:`nas_attn.front`); read only through
    :func:`nas_attn.results.load_front_eval`.
    """

    test_acc: Accuracy | None = None
    test_top5: Accuracy | None = None
    reeval: Reevaluation | None = None

    def updated(self, **values: Any) -> FrontEval:
        """A copy with ``values`` (validated as read)."""
        return FrontEval.model_validate({**self.model_dump(exclude_none=True), **values})
