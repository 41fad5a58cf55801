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

# Strict per field (YAML ``true`` is not a number); the class itself is lax so that a parent model may
# build it from a mapping.
PositiveInt = Annotated[int, Field(ge=1, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False, strict=True)]
Flag = Annotated[bool, Field(strict=True)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Recipe:
    """How one trial trains. Every value is checked when the record is made (``pydantic.ValidationError``)."""

    epochs: PositiveInt = 10
    batch_size: Annotated[int, Field(ge=2, strict=True)] = 256
    eval_batch_size: PositiveInt = 1024
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: Fraction = 0.9
    nesterov: Flag = True
    weight_decay: NonNegativeFloat = 5e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    label_smoothing: Fraction = 0.1
    #: random crop with this zero padding; 0 = off
    crop_padding: NonNegativeInt = 2
    hflip: Flag = True
    seed: Annotated[int, Field(ge=0, lt=2**32, strict=True)] = 0
    compile: Flag = False
    #: training images used to recompute BatchNorm statistics before each validation (0 = off); short
    #: trainings otherwise validate with running statistics that lag far behind the weights
    bn_recalibration: NonNegativeInt = 1024

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
