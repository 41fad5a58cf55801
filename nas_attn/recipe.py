"""The training recipe of a search (``train:`` in a space file): one validated, immutable record.

Kept apart from :mod:`nas_attn.train` so that a space file is checked without importing torch. Each field
carries its own range; the space file's ``train:`` section is validated against this class, so a field
added here is accepted (and checked) there with no other change.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=False))
class Recipe:
    """How one trial trains. Every value is checked when the record is made (``pydantic.ValidationError``)."""

    epochs: PositiveInt = 10
    batch_size: Annotated[int, Field(ge=2)] = 256
    eval_batch_size: PositiveInt = 1024
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: NonNegativeFloat = 5e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    #: random crop with this zero padding; 0 = off
    crop_padding: NonNegativeInt = 2
    hflip: bool = True
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    compile: bool = False
    #: training images used to recompute BatchNorm statistics before each validation (0 = off); short
    #: trainings otherwise validate with running statistics that lag far behind the weights
    bn_recalibration: NonNegativeInt = 1024

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
