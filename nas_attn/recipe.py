"""The training recipe of a search (``train:`` in a space file): one validated, immutable record.

Kept apart from :mod:`nas_attn.train` so that a space file is checked without importing torch. Each field
carries its own range; the space file's ``train:`` section is validated against this class, so a field
added here is accepted (and checked) there with no other change.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

# Strict per field (YAML ``true`` is not a number); the class itself is lax so that a parent model may
# build it from a mapping.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False, strict=True)]
Flag = Annotated[bool, Field(strict=True)]
UnitFraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False, strict=True)]
PositiveRatio = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, strict=True)]

# Upper bounds: values past them mean nothing for a trial and would only fail late (an allocation, a crop of
# zeros) or run for ever. ``--epochs`` stops at the same count.
#: epochs of one trial (a million is centuries of training already)
MAX_EPOCHS = 1_000_000
#: images in one batch: the largest batches trained in the literature (ImageNet in minutes) hold 64k
MAX_BATCH = 65_536
#: pixels of crop padding: the largest input side an arch may have (``nas_attn.arch.MAX_INPUT_SIZE``)
MAX_PADDING = 4096
#: training images for BatchNorm recalibration: ten ImageNets
MAX_IMAGES = 12_800_000
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS, strict=True)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Recipe:
    """How one trial trains. Every value is checked when the record is made (``pydantic.ValidationError``)."""

    epochs: Epochs = 10
    batch_size: Annotated[int, Field(ge=2, le=MAX_BATCH, strict=True)] = 256
    #: on a GPU; a CPU evaluates in batches of at most ``nas_attn.train.CPU_EVAL_BATCH`` (faster, far less memory)
    eval_batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH, strict=True)] = 1024
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.1
    momentum: Fraction = 0.9
    nesterov: Flag = True
    weight_decay: NonNegativeFloat = 5e-4
    #: per step: ``onecycle`` (its own warm-up), ``cosine``, ``constant``; at epoch boundaries: ``step`` (× gamma
    #: every ``step_epochs``) and ``multistep`` (× gamma at each of ``milestones``)
    schedule: Literal["onecycle", "cosine", "constant", "step", "multistep"] = "onecycle"
    #: linear warm-up from lr / warm-up steps to lr over these epochs (not with onecycle, which warms up itself)
    warmup_epochs: Annotated[float, Field(ge=0, le=MAX_EPOCHS, allow_inf_nan=False, strict=True)] = 0.0
    step_epochs: Epochs = 30
    milestones: tuple[Epochs, ...] = ()
    gamma: UnitFraction = 0.1
    label_smoothing: Fraction = 0.1
    #: ``pad_crop``: images stored at the input size, random crop with ``crop_padding`` zero padding (small
    #: inputs, the CIFAR papers); ``random_resized_crop``: images stored at input size / ``crop_fraction``,
    #: a random crop of ``rrc_scale`` of the area and ``rrc_ratio`` aspect resized to the input size (the
    #: ImageNet papers), centre crop of the input size for evaluation
    augment: Literal["pad_crop", "random_resized_crop"] = "pad_crop"
    #: random crop with this zero padding; 0 = off (``pad_crop``)
    crop_padding: Annotated[int, Field(ge=0, le=MAX_PADDING, strict=True)] = 2
    rrc_scale: tuple[UnitFraction, UnitFraction] = (0.08, 1.0)
    rrc_ratio: tuple[PositiveRatio, PositiveRatio] = (0.75, 4 / 3)
    #: input size / stored side (``random_resized_crop``): 0.875 stores 256 px for 224-px crops
    crop_fraction: UnitFraction = 0.875
    hflip: Flag = True
    seed: Annotated[int, Field(ge=0, lt=2**32, strict=True)] = 0
    compile: Flag = False
    #: training images used to recompute BatchNorm statistics before each validation (0 = off); short
    #: trainings otherwise validate with running statistics that lag far behind the weights
    bn_recalibration: Annotated[int, Field(ge=0, le=MAX_IMAGES, strict=True)] = 1024

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        for name in ("rrc_scale", "rrc_ratio"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: the lower bound {lo} exceeds the upper bound {hi}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise ValueError(f"milestones: must increase strictly, got {list(self.milestones)}")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("milestones: schedule multistep needs at least one milestone (epochs)")
        if self.schedule == "onecycle" and self.warmup_epochs:
            raise ValueError("warmup_epochs: onecycle warms up by itself (use cosine, step or multistep)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def compressed(self, epochs: int) -> Recipe:
        """The same schedule run over ``epochs`` instead (fine-tuning, a supernet's longer training): the
        warm-up, the step length and the milestones scaled by ``epochs / self.epochs`` (a step at least one
        epoch; milestones kept distinct and inside the run)."""
        ratio = epochs / self.epochs
        milestones: list[int] = []
        for m in self.milestones:
            scaled = min(epochs, max(1, round(m * ratio)))
            if not milestones or scaled > milestones[-1]:
                milestones.append(scaled)
        return self.replace(epochs=epochs, warmup_epochs=self.warmup_epochs * ratio,
                            step_epochs=max(1, round(self.step_epochs * ratio)), milestones=tuple(milestones))
