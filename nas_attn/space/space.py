"""A validated search space: the file's sections compiled against the backbone and the module registry.

:func:`load_space` reads a space file, validates it (:mod:`nas_attn.space.schema`), imports the Python
modules it names (extra attention modules), and checks what depends on the backbone at the full budget
and, when the file has one, at its CPU budget: positions in range, ops legal there, groups dividing the
channels, module limits. Every problem is one :class:`~nas_attn.errors.SpaceError` line naming the file, the
key and the reason, raised before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nas_attn.arch import Arch, Placement
from nas_attn.backbones.library import is_library_name
from nas_attn.errors import NasAttnError, SpaceError, validation_message
from nas_attn.modules import get_entry, list_modules
from nas_attn.recipe import Recipe
from nas_attn.samplers import SamplerRequest, resolve_sampler
from nas_attn.space.schema import OBJECTIVES, Choices, CpuBudgetSection, SpaceFile
from nas_attn.strategy import Strategy

NONE = "none"


@dataclass(frozen=True)
class PositionChoice:
    """What the search may choose at one position (ops: those legal there)."""

    index: int
    channels: int
    side: int
    modules: tuple[str, ...]
    groups: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def real_modules(self) -> tuple[str, ...]:
        return tuple(m for m in self.modules if m != NONE)

    def choices(self) -> list[Placement | None]:
        """Every choice here: ``None`` (no module) where allowed, then each module, groups and op, in that
        order (the joint encoding's options, the supernet's candidates)."""
        options: list[Placement | None] = [None] if NONE in self.modules else []
        for m in self.real_modules:
            for g in (self.groups if get_entry(m).takes_groups else (None,)):
                options += [Placement(self.index, m, op, g) for op in self.ops]
        return options


@dataclass(frozen=True)
class Violation:
    """How far an arch is over each constraint, by name (Optuna's convention: > 0 violated, <= 0 met)."""

    values: dict[str, float]
    reason: str | None


#: the largest input side the small-input stems are made for (28–64 px: Fashion-MNIST, CIFAR, ImageNet-64)
SMALL_INPUT_MAX = 64


@dataclass(frozen=True)
class RunSettings:
    """What a run changes in a space: flags first, then the CPU budget, then the file (``None``: not given)."""

    trials: int | None = None
    epochs: int | None = None
    seed: int | None = None
    sampler: str | None = None
    concurrency: int | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    compile: bool = False
    #: ``--strategy``: the evaluation strategy over the file's ``strategy.name``
    strategy: str | None = None
    #: recipe settings over the file's and the CPU budget's (``nas-attn train --recipe KEY=VALUE``)
    recipe: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchSpace:
    """A validated space. ``file`` keeps the sections as read; the rest is compiled from them."""

    name: str
    path: Path
    sha256: str
    file: SpaceFile
    base: Arch
    positions: tuple[PositionChoice, ...]
    recipe: Recipe
    trials: int
    concurrency: int | None
    cpus_per_trial: float
    gpus_per_trial: float
    sampler: str
    sampler_seed: int
    train_subset: int | None
    val_subset: int | None
    test_subset: int | None = None
    #: ASHA's grace period (the CPU budget's when that applies); ``None`` without early stopping
    asha_grace_period: int | None = None
    cpu_budget_applied: bool = False
    warnings: tuple[str, ...] = ()
    #: the one arch every trial trains (``nas-attn train``); ``None`` in a search
    fixed: Arch | None = None
    #: ``--strategy`` over the file's ``strategy.name`` (``None``: the file's)
    strategy_name: str | None = None

    # -- what the rest of the program reads ------------------------------------------------------
    @property
    def objectives(self) -> tuple[str, ...]:
        return tuple(self.file.objectives)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    @property
    def imports(self) -> tuple[str, ...]:
        return tuple(self.file.imports)

    @property
    def dataset(self):
        return self.file.dataset

    @property
    def asha(self):
        return self.file.early_stopping

    @property
    def strategy(self) -> Strategy:
        """How candidates are evaluated, its defaults resolved against this space's recipe (so a CPU budget's
        fewer epochs give fewer fine-tuning and supernet epochs too)."""
        if self.fixed is not None:  # nas-attn train: one arch, trained from scratch whatever the file says
            return Strategy.resolve({"name": "scratch"}, self.recipe.epochs, self.trials)
        given = {**self.file.strategy.given(), "name": self.strategy_name or self.file.strategy.name}
        return Strategy.resolve(given, self.recipe.epochs, self.trials)

    def sampler_request(self, seed: int) -> SamplerRequest:
        """What this space's sampler factory is given: the file's ``sampler.options`` go to the sampler the
        file names (``population_size`` among them), not to another one a flag picks instead."""
        section = self.file.sampler
        options = {} if self.sampler != section.name else {
            **({"population_size": section.population_size} if section.population_size is not None else {}),
            **section.options}
        return SamplerRequest(seed, options, self.trials)

    def arch(self, placements: list[Placement]) -> Arch:
        """The backbone of this space with ``placements``."""
        return dataclasses.replace(self.base, placements=list(placements))

    def vanilla_possible(self) -> bool:
        return self.file.search.include_vanilla and all(NONE in p.modules for p in self.positions)

    @property
    def counts_before_training(self) -> bool:
        """Whether an arch's params and FLOPs are counted before it is trained (by the driver): where a constraint
        can refuse it, since a refused arch is told with its real cost and never trained. Otherwise each trial
        counts its own."""
        limits = (self.file.constraints.max_flops, self.file.constraints.max_params, self.file.search.max_placements)
        return any(limit is not None for limit in limits)

    def violation(self, arch: Arch, cost: dict[str, int] | None) -> Violation:
        """How far ``arch`` (with ``cost``, its params and flops; ``None`` where the space has no constraints:
        :attr:`counts_before_training`) is over the constraints, relative to each limit."""
        limits = [("flops", self.file.constraints.max_flops), ("params", self.file.constraints.max_params),
                  ("placements", self.file.search.max_placements)]
        values, reason = {}, None
        for what, limit in limits:
            if limit is None:
                continue
            if what != "placements" and cost is None:
                raise ValueError(f"max_{what}: the arch's cost is needed (counts_before_training)")
            value = len(arch.placements) if what == "placements" else cost[what]
            values[f"max_{what}"] = value / limit - 1.0
            if value > limit and reason is None:
                reason = (f"{what} {value / 1e6:.2f}M > max_{what} {limit / 1e6:.2f}M" if what == "flops"
                          else f"{value} {what} > max_{what} {int(limit)}")
        return Violation(values, reason)

    def summary(self) -> str:
        if self.fixed is not None:
            return (f"train {self.name}: {self.base.backbone} (width {self.base.width}, input {self.base.input_size}, "
                    f"small_input {self.base.small_input}) with {self.fixed.short()}; objectives "
                    f"{', '.join(self.objectives)}; {self.trials} seed(s) x {self.recipe.epochs} epochs")
        idx = [p.index for p in self.positions]
        mods = sorted({m for p in self.positions for m in p.modules})
        return (f"space {self.name}: {self.base.backbone} (width {self.base.width}, input {self.base.input_size}, "
                f"small_input {self.base.small_input}), positions {index_ranges(idx)}, modules {', '.join(mods)}; "
                f"objectives {', '.join(self.objectives)}; sampler {self.sampler}; {self.trials} trials x "
                f"{self.recipe.epochs} epochs" + ("" if self.strategy.name == "scratch" else
                                                 f"; evaluation {self.strategy.summary()}"))

    # -- deriving the space a run uses ------------------------------------------------------------
    def for_arch(self, arch: Arch, seeds: int, input_size: int | None = None,
                 recipe: Mapping[str, Any] | None = None) -> SearchSpace:
        """The space of ``nas-attn train``: ``arch`` trained ``seeds`` times with this space's dataset and recipe.

        The arch keeps its backbone, settings and placements; it is trained at ``input_size`` (default: the
        space's), with the space's recipe changed by ``recipe`` (``--recipe``: here, so that the data is stored
        for the recipe that trains on it), and the dataset fixes its classes and channels in :meth:`for_run`.
        Nothing is chosen: no
        positions, no vanilla trial, no constraints, no early stopping (every seed runs the whole recipe), and a
        CPU budget keeps only what it says of the data and the recipe (the arch fixes the network, ``seeds`` the
        number of runs).
        """
        size = input_size or self.base.input_size
        try:
            trained_recipe = self.recipe.replace(**(recipe or {}))
        except ValidationError as exc:
            raise NasAttnError(f"--recipe: {validation_message(exc)}") from None
        except TypeError as exc:  # a value dataclasses.replace cannot take
            raise NasAttnError(f"--recipe: {exc}") from None
        fixed = dataclasses.replace(arch, input_size=size, in_chans=self.base.in_chans)
        try:
            fixed.validate()
        except NasAttnError as exc:  # a placement may fail for the size (a map too small, or too large for it)
            where = "--input-size" if input_size else "this space's input size"
            at = f" at {where} ({size} px)" if str(exc).startswith("placement") else ""
            raise NasAttnError(f"--arch{at}: {exc}") from None
        budget = self.file.cpu_budget
        file = self.file.model_copy(update={
            "search": self.file.search.model_copy(update={"include_vanilla": False, "max_placements": None}),
            "constraints": self.file.constraints.model_copy(update={"max_flops": None, "max_params": None}),
            "early_stopping": None,
            "cpu_budget": None if budget is None else budget.model_copy(update={"trials": None, "width": None}),
        })
        return dataclasses.replace(self, name=f"train-{self.name}", file=file, base=fixed, positions=(), trials=seeds,
                                   recipe=trained_recipe,
                                   sampler="random", asha_grace_period=None, fixed=fixed,
                                   warnings=self._stem_warning(fixed))

    def _stem_warning(self, arch: Arch) -> tuple[str, ...]:
        """The arch is trained with the stem it names; one made for other sizes is worth a line at start-up (a
        paper's ImageNet arch at 32 px keeps its early downsampling: 1 px before the last stage)."""
        small = arch.input_size <= SMALL_INPUT_MAX
        if arch.small_input == small or is_library_name(arch.backbone):  # a library model has one stem
            return ()
        named, made = ("ImageNet", "224 px") if small else ("small-input", f"{SMALL_INPUT_MAX} px or less")
        return (f"--arch names the {named} stem (small_input {str(arch.small_input).lower()}), made for {made}, "
                f"at {arch.input_size} px: trained as given; set \"small_input\": {str(small).lower()} in the arch "
                f"for the stem made for this size",)

    def for_run(self, settings: RunSettings, *, cpu_budget: bool, num_classes: int, in_chans: int) -> SearchSpace:
        """The space as a run uses it: ``settings`` (flags) win over the CPU budget (when ``cpu_budget``
        and the file has one), which wins over the file; the dataset fixes classes and input channels."""
        budget = self.file.cpu_budget.given() if cpu_budget and self.file.cpu_budget else {}
        s = settings
        recipe = self.recipe.replace(
            epochs=_first(s.epochs, budget.get("epochs"), self.recipe.epochs),
            batch_size=_first(budget.get("batch_size"), self.recipe.batch_size),
            lr=float(_first(budget.get("lr"), self.recipe.lr)),
            seed=_first(s.seed, self.recipe.seed), compile=s.compile or self.recipe.compile).replace(**s.recipe)
        base = dataclasses.replace(self.base, num_classes=num_classes, in_chans=in_chans,
                                   width=float(_first(budget.get("width"), self.base.width)))
        positions = self.positions if base.width == self.base.width else _compile_positions(self.file, base)[0]
        return dataclasses.replace(
            self, base=base, positions=positions, recipe=recipe, fixed=base if self.fixed is not None else None,
            trials=_first(s.trials, budget.get("trials"), self.trials),
            concurrency=_first(s.concurrency, budget.get("concurrency"), self.concurrency),
            cpus_per_trial=float(_first(s.cpus_per_trial, self.cpus_per_trial)),
            gpus_per_trial=float(_first(s.gpus_per_trial, self.gpus_per_trial)),
            sampler=_first(s.sampler, self.sampler), sampler_seed=_first(s.seed, self.sampler_seed),
            train_subset=_first(budget.get("train_subset"), self.train_subset),
            val_subset=_first(budget.get("val_subset"), self.val_subset),
            test_subset=_first(budget.get("test_subset"), self.test_subset),
            asha_grace_period=budget.get("grace_period", self.asha_grace_period) if self.asha else None,
            cpu_budget_applied=bool(budget), strategy_name=s.strategy or self.strategy_name)

    def cpu_budget_note(self, flags: Collection[str] = (), why: str = "no GPU") -> str | None:
        """What the CPU budget changes, for the start-up message (``None`` without one); ``flags``: the budget's
        keys a flag sets instead (left out of the list), ``why``: why the budget applies."""
        if self.file.cpu_budget is None:
            return None
        given = ", ".join(f"{k} {v}" for k, v in self.file.cpu_budget.given().items() if k not in flags)
        file = self.file
        full = ("the space's full data and recipe" if self.fixed is not None else
                f"{file.budget.trials} trials x {file.train.epochs} epochs at width {file.backbone.width}")
        flagged = f"; flags set {', '.join(sorted(flags))}" if flags else ""
        return (f"{why}: using the space's cpu_budget ({given or 'nothing a flag leaves'}) instead of {full}"
                f"{flagged}; --full-budget runs the full one")


def _first(*values):
    """The first value that is not ``None`` (``None`` if all are)."""
    return next((v for v in values if v is not None), None)


class _DuplicateKey(Exception):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a space file that says a thing twice is refused."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise _DuplicateKey(f"key {key!r} given twice (again at line {key_node.start_mark.line + 1})")
            seen.add(key) if isinstance(key, (str, int, float, bool)) else None
        return super().construct_mapping(node, deep)


# -- loading --------------------------------------------------------------------------------------------

def read_space_file(path: Path) -> tuple[dict[str, Any], str]:
    """The file's top-level mapping and its text; one-line :class:`SpaceError` for unreadable YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as exc:
        raise SpaceError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise SpaceError(f"{path}: nested too deeply") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping of keys at the top level")
    return raw, text


def _import_plugins(path: Path, names: list[str]) -> None:
    for name in names:  # modules that register extra attention modules
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or anything the module raises while importing
            raise SpaceError(f"{path}: imports: cannot import {name!r} ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def load_space(name_or_path: str | Path, dataset: str | None = None) -> SearchSpace:
    """Load and validate a space file (at its full budget, and at its CPU budget when it has one).

    Args:
        name_or_path: a space name (``search_spaces/NAME.yaml`` in the working directory, then the spaces
            that ship with nas-attn) or a path to a ``.yaml`` file.
        dataset: replaces the file's ``dataset.name`` (the ``--dataset`` flag).

    Raises:
        SpaceError: ``<file>: <key>: <reason>`` for the first problem found.
    """
    from nas_attn.space.files import resolve_space_path

    path = resolve_space_path(str(name_or_path))
    raw, text = read_space_file(path)
    if dataset is not None:
        raw = {**raw, "dataset": {**(raw.get("dataset") or {}), "name": dataset}}
    try:
        file = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        raise SpaceError(f"{path}: {validation_message(exc)}") from None
    _import_plugins(path, file.imports)
    try:
        return _compile(file, path, hashlib.sha256(text.encode()).hexdigest())
    except SpaceError:
        raise
    except NasAttnError as exc:
        raise SpaceError(f"{path}: {exc}") from None


def _compile(file: SpaceFile, path: Path, sha: str) -> SearchSpace:
    from nas_attn.data import DATASETS

    if file.dataset.name not in DATASETS:
        raise SpaceError(f"{path}: dataset.name: unknown dataset {file.dataset.name!r} (one of {', '.join(DATASETS)})")
    if file.name is not None:
        _check_name(path, file.name)
    try:
        base = Arch.from_dict({"backbone": file.backbone.name, "num_classes": 10, "input_size": file.dataset.input_size,
                               "in_chans": 1 if file.dataset.name == "fashion_mnist" else 3,
                               **file.backbone.settings()})
        base.positions()
    except NasAttnError as exc:
        raise SpaceError(f"{path}: backbone: {exc}") from None
    try:
        positions, warnings = _compile_positions(file, base)
    except SpaceError as exc:
        raise SpaceError(f"{path}: {exc}") from None
    budget = file.cpu_budget
    if budget is not None and budget.width is not None and budget.width != base.width:
        try:  # a CPU run uses another width: every choice must be legal there too
            _compile_positions(file, dataclasses.replace(base, width=float(budget.width)))
        except SpaceError as exc:
            raise SpaceError(f"{path}: {exc} (at cpu_budget.width {budget.width})") from None
    _check_cpu_recipe(path, file.train, budget)
    try:  # a factory named by import path is found now: a bad one is one line before anything runs
        resolve_sampler(file.sampler.name)
    except NasAttnError as exc:
        raise SpaceError(f"{path}: sampler.name: {exc}") from None
    return SearchSpace(
        name=file.name or path.stem, path=path.resolve(), sha256=sha, file=file, base=base, positions=positions,
        recipe=file.train, trials=file.budget.trials, concurrency=file.budget.concurrency,
        cpus_per_trial=float(file.resources.cpu), gpus_per_trial=float(file.resources.gpu),
        sampler=file.sampler.name, sampler_seed=file.sampler.seed, train_subset=file.dataset.train_subset,
        val_subset=file.dataset.val_subset, test_subset=file.dataset.test_subset, warnings=tuple(warnings),
        asha_grace_period=file.early_stopping.grace_period if file.early_stopping else None)


def _check_name(path: Path, name: str) -> None:
    from nas_attn.storage import check_folder_name

    try:
        check_folder_name(name, "name")
    except NasAttnError as exc:
        raise SpaceError(f"{path}: {exc}") from None


def _check_cpu_recipe(path: Path, recipe: Recipe, budget: CpuBudgetSection | None) -> None:
    """The CPU budget's recipe values must make a valid recipe too."""
    if budget is None:
        return
    changes = {k: v for k, v in budget.given().items() if k in ("epochs", "batch_size", "lr")}
    try:
        recipe.replace(**{k: float(v) if k == "lr" else v for k, v in changes.items()})
    except ValidationError as exc:
        raise SpaceError(f"{path}: cpu_budget: {validation_message(exc)}") from None


def _compile_positions(file: SpaceFile, base: Arch) -> tuple[tuple[PositionChoice, ...], list[str]]:
    """Each searched position's choices, checked against the backbone at ``base``'s settings."""
    by_index = {p.index: p for p in base.positions()}
    search = file.search
    known = [NONE, *list_modules()]
    for key, choices in [("search", search), *((f"search.overrides.{k}", c) for k, c in search.overrides.items())]:
        for m in choices.modules or []:
            if m not in known:
                raise SpaceError(f"{key}.modules: unknown value {m!r} (one of {', '.join(known)})")
    for k in search.overrides:
        if k not in search.positions:
            raise SpaceError(f"search.overrides.{k}: position {k} is not in search.positions")
    legal = [p.index for p in by_index.values() if p.ops]
    dropped: dict[str, list[int]] = {}  # op -> positions where it is not legal
    out = []
    for k in search.positions:
        pos = by_index.get(k)
        if pos is None or not pos.ops:
            raise SpaceError(f"search.positions: position {k} out of range for {base.backbone} "
                             f"({legal[0]}-{legal[-1]})")
        over = search.overrides.get(k, Choices())
        key = f"search.overrides.{k}" if k in search.overrides else "search"
        out.append(_position_choice(pos, key, over, search, dropped))
    warnings = [f"op {op} is not legal at position(s) {', '.join(map(str, ks))}: not searched there"
                for op, ks in dropped.items()]
    return tuple(out), warnings

def _position_choice(pos, key: str, over: Choices, search, dropped: dict[str, list[int]]) -> PositionChoice:
    """The choices at ``pos`` (an override's, else the search's), each checked against the layer there; ops not
    legal there are noted in ``dropped`` (or refused with ``strict_ops``)."""
    modules = over.modules or search.modules
    groups = over.groups or search.groups
    legal_ops = _legal_ops(pos, key, over.ops or search.ops, search.strict_ops, dropped)
    real = [m for m in modules if m != NONE]
    if real and not legal_ops:
        raise SpaceError(f"{key}.ops: no legal op at position {pos.index} (legal there: {', '.join(pos.ops)})")
    _check_groups(pos, key, real, groups)
    _check_module_limits(pos, key, real)
    return PositionChoice(pos.index, pos.out_channels, pos.side, tuple(modules), tuple(groups),
                          tuple(legal_ops or ["insert"]))


def _legal_ops(pos, key: str, ops: list[str], strict: bool, dropped: dict[str, list[int]]) -> list[str]:
    """``ops`` legal at ``pos``; the others are noted in ``dropped``, or refused when ``strict``."""
    illegal = [op for op in ops if op not in pos.ops]
    if illegal and strict:
        raise SpaceError(f"{key}.ops: position {pos.index} ({pos.kind}, {pos.in_channels}->{pos.out_channels}): op "
                         f"{', '.join(illegal)} not legal (strict_ops is set)")
    for op in illegal:
        dropped.setdefault(op, []).append(pos.index)
    return [op for op in ops if op in pos.ops]


def _check_groups(pos, key: str, modules: list[str], groups: list[int]) -> None:
    """Every group count divides the channels at ``pos``, where a module there splits channels into groups."""
    if not any(get_entry(m).takes_groups for m in modules):
        return
    bad = [g for g in groups if pos.out_channels % g]
    if bad:
        raise SpaceError(f"{key}.groups: groups {bad} do not divide the {pos.out_channels} channels of "
                         f"position {pos.index}")


def _check_module_limits(pos, key: str, modules: list[str]) -> None:
    """No module would attend over more positions at ``pos`` than it allows (``max_positions``)."""
    for m in modules:
        limit = get_entry(m).max_positions
        if limit is not None and pos.side ** 2 > limit:
            raise SpaceError(f"{key}.modules: {m} at position {pos.index} would attend over {pos.side}x{pos.side} = "
                             f"{pos.side ** 2} positions (limit {limit})")


def index_ranges(indices: list[int]) -> str:
    """``[8, 9, 10, 14, 17]`` as ``8-10, 14, 17``: runs of consecutive positions joined, the others listed."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
