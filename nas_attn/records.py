"""Typed records that cross module boundaries: trial statuses, one epoch's figures, one trial report.

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
from typing import Any


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
        node, node_id, device: where it ran.
        startup_s: trial start to its first training step, measured in the trial's process.
        train_s: trial start to the end of its last epoch.
        latency_ms: the arch's measured latency (``nas_attn.latency``), when an objective.
    """

    epoch: EpochStats | None = None
    completed: bool = False
    failed: bool = False
    reason: str = ""
    traceback: str = ""
    node: str = ""
    node_id: str = ""
    device: str = ""
    startup_s: float | None = None
    train_s: float | None = None
    #: median forward latency at batch 1 on the trial's device (only when a space asks for it)
    latency_ms: float | None = None

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


@dataclass(frozen=True)
class TrialConfig:
    """What the searcher hands a trial (Ray Tune's ``config``): the arch, its cost, its number and seed."""

    arch: str  #: the arch as JSON
    trial_number: int
    seed: int
    params: int
    flops: int

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialConfig:
        return cls(**{f.name: config[f.name] for f in fields(cls)})
