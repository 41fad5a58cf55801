"""The search-space file format, declared as pydantic models.

Each section of a ``search_spaces/*.yaml`` file is one model here: unknown keys are refused, types are
strict (YAML ``true`` is not a number, ``"12"`` is not an integer), numbers are finite and in range. What
depends on the backbone (positions, channels, legal ops, groups dividing channels, module limits) is
checked afterwards by :mod:`nas_attn.space.space`, which compiles a validated :class:`SpaceFile` into a
:class:`~nas_attn.space.space.SearchSpace`. Torch-free, so that a bad file is answered at once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nas_attn.arch import MAX_INPUT_SIZE, MAX_WIDTH
from nas_attn.backbones import OPS
from nas_attn.recipe import Recipe
from nas_attn.samplers import BUILTIN_SAMPLERS, IMPORT_PATH

Finite = Annotated[float, Field(allow_inf_nan=False)]
PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]
#: the largest position range a space may name (a backbone has at most a few hundred numbered layers)
MAX_POSITIONS = 1000
#: objective → Optuna direction; ``latency_ms`` is measured by each trial on its device (nas_attn.latency)
OBJECTIVES = {"val_acc": "maximize", "flops": "minimize", "params": "minimize", "latency_ms": "minimize"}
#: the built-in samplers (:mod:`nas_attn.samplers` holds them; a space may name others)
SAMPLERS = BUILTIN_SAMPLERS
_SAMPLER_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class Section(BaseModel):
    """A part of the file: unknown keys refused, strict types, frozen once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BackboneSection(Section):
    """``backbone:`` the network and its settings; further settings (``variant`` …) go to the arch as is."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: str
    width: PositiveFinite = Field(1.0, le=MAX_WIDTH)
    small_input: bool = False

    def settings(self) -> dict[str, Any]:
        """Every setting but the name, as :class:`~nas_attn.arch.Arch` keyword arguments."""
        return {"width": float(self.width), "small_input": self.small_input, **(self.model_extra or {})}


class DatasetSection(Section):
    """``dataset:`` what trials train on, at which input size, and how the validation split is carved."""

    name: str = "fashion_mnist"
    input_size: Annotated[int, Field(ge=8, le=MAX_INPUT_SIZE)]
    val_fraction: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.1
    train_subset: Annotated[int, Field(ge=2)] | None = None
    val_subset: Annotated[int, Field(ge=1)] | None = None
    #: a stratified subset of the test set for the front's test figures (quick runs; the manifest records it)
    test_subset: Annotated[int, Field(ge=1)] | None = None


class Choices(Section):
    """What may be chosen at a position (the defaults of ``search:``, or one of its ``overrides``)."""

    modules: list[str] | None = None
    groups: list[Annotated[int, Field(ge=1, le=4096)]] | None = None
    ops: list[Literal[OPS]] | None = None  # type: ignore[valid-type]

    @field_validator("modules", "groups", "ops")
    @classmethod
    def _non_empty_and_unique(cls, v: list | None) -> list | None:
        if v is not None and not v:
            raise ValueError("empty list (give at least one choice)")
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"repeated choices in {v}")
        return v


class SearchSection(Choices):
    """``search:`` the positions open to search, the default choices there, and per-position overrides."""

    positions: list[int] | str
    modules: list[str]
    groups: list[Annotated[int, Field(ge=1, le=4096)]] = [1, 2, 4, 8, 16]
    ops: list[Literal[OPS]] = ["insert"]  # type: ignore[valid-type]
    strict_ops: bool = False
    overrides: dict[int, Choices] = {}
    max_placements: Annotated[int, Field(ge=1)] | None = None
    include_vanilla: bool = True
    #: how Optuna sees a position (:mod:`nas_attn.space.encoding`): ``joint`` (one choice over every
    #: module/groups/op), ``flat`` (module, groups and op always sampled) or ``conditional`` (groups and op
    #: only when a module is chosen; what NSGA-II's crossover never touches). ``scripts/bench_sampler.py``
    #: measured ``joint`` best for every sampler.
    encoding: Literal["joint", "flat", "conditional"] = "joint"

    @field_validator("positions")
    @classmethod
    def _position_list(cls, v: list[int] | str) -> list[int]:
        if isinstance(v, str):
            m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", v)
            if not m:
                raise ValueError(f"expected a list or a range like '8-17', got {v!r}")
            lo, hi = int(m[1]), int(m[2])
            if lo > hi:
                raise ValueError(f"empty range {v!r} (the first position must not exceed the last)")
            v = list(range(lo, hi + 1))
        if not v:
            raise ValueError("empty list (give at least one position)")
        if len(v) > MAX_POSITIONS:
            raise ValueError(f"{len(v)} positions: more than any backbone has (limit {MAX_POSITIONS})")
        if len(set(v)) != len(v):
            raise ValueError(f"repeated positions in {v}")
        return v

    @model_validator(mode="after")
    def _some_module(self) -> SearchSection:
        # only `none` everywhere: every sampled arch would be the vanilla backbone, so there is nothing to search
        chosen = set(self.modules).union(*(o.modules or () for o in self.overrides.values()))
        if chosen <= {"none"}:
            raise ValueError(f"modules: {sorted(chosen)} leaves nothing to search (add an attention module)")
        return self


class ConstraintsSection(Section):
    """``constraints:`` limits checked when an arch is proposed (over a limit: infeasible, never trained)."""

    max_flops: PositiveFinite | None = None
    max_params: PositiveFinite | None = None


class SamplerSection(Section):
    """``sampler:`` a registered sampler (built in, or registered by a module in ``imports:``), or a factory's
    import path ``package.module:function``, found when the space is loaded (:mod:`nas_attn.samplers`)."""

    name: str = "nsga2"
    seed: Seed = 0
    #: NSGA-II's population (shorthand for ``options: {population_size: N}``)
    population_size: Annotated[int, Field(ge=2, le=100_000)] | None = None
    #: keyword arguments of the sampler (the built-in ones: their Optuna class's), handed to its factory
    options: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name_or_import_path(cls, v: str) -> str:
        if not (_SAMPLER_NAME.match(v) or IMPORT_PATH.match(v)):
            raise ValueError(f"{v!r} is neither a sampler's name ({', '.join(SAMPLERS)} …) nor an import path "
                             f"('package.module:function')")
        return v


class BudgetSection(Section):
    trials: Annotated[int, Field(ge=1, le=1_000_000)] = 32
    concurrency: Annotated[int, Field(ge=1, le=100_000)] | None = None


class ResourcesSection(Section):
    """``resources:`` per trial: CPUs, and a GPU fraction (0.25 packs four trials per GPU)."""

    cpu: Annotated[float, Field(gt=0, le=1024, allow_inf_nan=False)] = 1
    gpu: Annotated[float, Field(ge=0, le=64, allow_inf_nan=False)] = 0.25

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"above 1 a GPU count must be whole, got {v}")
        return v


class EarlyStoppingSection(Section):
    """``early_stopping:`` ASHA on validation accuracy."""

    scheduler: Literal["asha"] = "asha"
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[float, Field(gt=1, le=100, allow_inf_nan=False)] = 2


class CpuBudgetSection(Section):
    """``cpu_budget:`` what a search without a GPU runs instead of the full budget."""

    trials: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    epochs: Annotated[int, Field(ge=1)] | None = None
    train_subset: Annotated[int, Field(ge=2)] | None = None
    val_subset: Annotated[int, Field(ge=1)] | None = None
    #: a stratified subset of the test set for the front's test figures (quick runs; the manifest records it)
    test_subset: Annotated[int, Field(ge=1)] | None = None
    width: Annotated[float, Field(gt=0, le=MAX_WIDTH, allow_inf_nan=False)] | None = None
    batch_size: Annotated[int, Field(ge=2)] | None = None
    lr: PositiveFinite | None = None
    concurrency: Annotated[int, Field(ge=1, le=100_000)] | None = None
    #: ASHA's grace period under the CPU budget (its few epochs may be fewer than the full grace period)
    grace_period: Annotated[int, Field(ge=1)] | None = None

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class StrategySection(Section):
    """``strategy:`` how candidates are evaluated (:mod:`nas_attn.strategy`); ``--strategy`` sets ``name``."""

    name: Literal["scratch", "inherit", "oneshot"] = "scratch"
    inherit_epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None
    supernet_epochs: Annotated[int, Field(ge=1, le=100_000)] | None = None
    retrain_top_k: Annotated[int, Field(ge=1, le=10_000)] = 4
    scored: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    bn_images: Annotated[int, Field(ge=1, le=10_000_000)] = 1024
    score_batch: Annotated[int, Field(ge=1, le=100_000)] = 8

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SpaceFile(Section):
    """A whole space file. Its own fields are few and plain; the sections keep their strict types (the
    recipe is a pydantic dataclass, which a strict parent would accept only as an instance)."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    name: str | None = None
    description: str = ""
    imports: list[str] = []
    backbone: BackboneSection
    dataset: DatasetSection
    search: SearchSection
    objectives: list[Literal[tuple(OBJECTIVES)]] = ["val_acc", "flops"]  # type: ignore[valid-type]
    constraints: ConstraintsSection = ConstraintsSection()
    sampler: SamplerSection = SamplerSection()
    budget: BudgetSection = BudgetSection()
    resources: ResourcesSection = ResourcesSection()
    train: Recipe = Recipe()
    early_stopping: EarlyStoppingSection | None = None
    cpu_budget: CpuBudgetSection | None = None
    strategy: StrategySection = StrategySection()

    @field_validator("imports")
    @classmethod
    def _importable_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _MODULE_NAME.match(name):
                raise ValueError(f"{name!r} is not a Python module name (like 'my_package.attention')")
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        if "val_acc" not in v or len(v) < 2 or len(set(v)) != len(v):
            raise ValueError(f"need val_acc and at least one of flops, params, latency_ms, each once (got {v})")
        return v

    @model_validator(mode="after")
    def _asha_fits_the_epochs(self) -> SpaceFile:
        asha, cpu = self.early_stopping, self.cpu_budget
        if asha is None:
            return self
        if self.strategy.name != "scratch":
            raise ValueError(f"early_stopping and strategy {self.strategy.name} do not combine (ASHA stops trials "
                             f"at the recipe's epochs; a strategy's trials run other budgets): drop one")
        budgets = [("early_stopping.grace_period", asha.grace_period, "train.epochs", self.train.epochs)]
        if cpu is not None:
            grace = cpu.grace_period or asha.grace_period
            key = "cpu_budget.grace_period" if cpu.grace_period else "early_stopping.grace_period"
            budgets.append((key, grace, "cpu_budget.epochs", cpu.epochs or self.train.epochs))
        for grace_key, grace, epochs_key, epochs in budgets:
            if grace > epochs:
                raise ValueError(f"{grace_key} {grace} exceeds {epochs_key} {epochs} (ASHA needs grace_period "
                                 f"<= the epochs a trial runs)")
        return self
