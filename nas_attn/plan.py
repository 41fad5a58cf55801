"""What a search will do, decided once: the flags (:class:`SearchOptions`), then one immutable
:class:`SearchPlan` made of the space, the flags, the dataset and the cluster, which the rest reads.

Everything here runs before Ray starts and before anything is written; the flags and the space file
are checked without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from nas_attn.arch import MAX_INPUT_SIZE, Arch
from nas_attn.errors import NasAttnError
from nas_attn.recipe import Recipe
from nas_attn.runfolder import RunFolder
from nas_attn.samplers import check_sampler_name, create_sampler
from nas_attn.space import RunSettings, SearchSpace

#: Ray Tune storage schemes (pyarrow file systems) accepted by ``--storage-path``
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
#: Optuna RDB URL schemes accepted by ``--storage`` (SQLAlchemy dialects, optionally with a driver)
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")

_Count = Annotated[int, Field(ge=1, le=1_000_000)]


#: flags that choose or re-rank archs: meaningless when one arch is given (``nas-attn train``)
_SEARCH_ONLY = ("sampler", "reevaluate_front", "strategy")
#: flags of ``nas-attn train`` only: a search's positions are numbered at its space's input size and recipe
_TRAIN_ONLY = ("input_size", "recipe")
#: recipe keys that ``--recipe`` leaves to their own flags
_RECIPE_FLAGS = {"epochs": "--epochs", "seed": "--seed", "compile": "--compile"}


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class SearchOptions:
    """The search's flags (``search.py --help``), typed and range-checked. ``None``: not given."""

    space: str
    trials: _Count | None = None
    epochs: _Count | None = None
    dataset: str | None = None
    data_root: str | None = None
    results_dir: str | None = None
    run_id: str | None = None
    resume: bool = False
    #: a registered sampler's name or a factory's import path (:mod:`nas_attn.samplers`)
    sampler: str | None = None
    #: how candidates are evaluated (:mod:`nas_attn.strategy`); default: the space's ``strategy.name``
    strategy: Literal["scratch", "inherit", "oneshot"] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    address: str | None = None
    gpus_per_trial: Annotated[float, Field(ge=0, le=64, allow_inf_nan=False)] | None = None
    cpus_per_trial: Annotated[float, Field(gt=0, le=1024, allow_inf_nan=False)] | None = None
    concurrency: _Count | None = None
    storage: str | None = None
    storage_path: str | None = None
    reevaluate_front: Annotated[int, Field(ge=0, le=100)] = 0
    full_budget: bool = False
    compile: bool = False
    quiet: bool = False
    #: where decoded datasets are kept (default: $XDG_CACHE_HOME/nas_attn/decoded)
    cache_dir: str | None = None
    #: an unreadable image or an empty class folder is an error (default: skipped with a warning)
    strict_data: bool = False
    #: device memory (GB) a trial may hold its images in; more is streamed from the cache (default: half of
    #: the trial's share of the free memory)
    device_data_gb: Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)] | None = None
    #: ``nas-attn train``: the arch (JSON text or a .json file) trained ``trials`` times, one seed each
    arch: str | None = None
    #: ``nas-attn train``: the input side in pixels (default: the space's)
    input_size: Annotated[int, Field(ge=8, le=MAX_INPUT_SIZE)] | None = None
    #: ``nas-attn train``: recipe settings over the space's, each ``KEY=VALUE`` (a YAML value)
    recipe: tuple[str, ...] = ()

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and v != int(v):
            raise ValueError(f"above 1 it must be a whole number, got {v}")
        return v

    @field_validator("sampler")
    @classmethod
    def _sampler_name(cls, v: str | None) -> str | None:
        return v if v is None else check_sampler_name(v)

    @field_validator("recipe")
    @classmethod
    def _recipe_settings(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = [f.name for f in dataclasses.fields(Recipe) if f.name not in _RECIPE_FLAGS]
        for item in v:
            key, equals, value = item.partition("=")
            if not equals or not key.strip() or not value.strip():
                raise ValueError(f"expected KEY=VALUE, got {item!r}")
            if key.strip() in _RECIPE_FLAGS:
                raise ValueError(f"{key.strip()}: give it with {_RECIPE_FLAGS[key.strip()]}")
            if key.strip() not in known:
                raise ValueError(f"unknown recipe key {key.strip()!r} (one of {', '.join(known)})")
            try:
                _recipe_value(value)
            except (yaml.YAMLError, RecursionError):
                raise ValueError(f"{key.strip()}: not a YAML value: {value[:40]!r}") from None
        return v

    @field_validator("storage")
    @classmethod
    def _rdb_url(cls, v: str | None) -> str | None:
        if v is not None and urlparse(v).scheme.split("+")[0] not in RDB_SCHEMES:
            raise ValueError(f"expected a database URL ({', '.join(s + '://…' for s in RDB_SCHEMES[:3])}), got {v!r}")
        return v

    @field_validator("storage_path")
    @classmethod
    def _storage_uri(cls, v: str | None) -> str | None:
        if v is not None and "://" in v and urlparse(v).scheme not in STORAGE_SCHEMES:
            raise ValueError(f"unknown scheme {urlparse(v).scheme!r} (a path, or one of "
                             f"{', '.join(s + '://' for s in STORAGE_SCHEMES)})")
        return v

    @classmethod
    def from_flags(cls, **flags: Any) -> SearchOptions:
        """Check the flags; the first problem is one :class:`NasAttnError` line naming the flag."""
        for name, value in flags.items():  # '' is never a meaningful path, URL or address
            if isinstance(value, str) and not value.strip():
                raise NasAttnError(f"--{name.replace('_', '-')}: empty (got {value!r})")
        training = flags.get("arch") is not None
        chosen = [name for name in (_SEARCH_ONLY if training else _TRAIN_ONLY) if flags.get(name)]
        if chosen and training:
            raise NasAttnError(f"--{chosen[0].replace('_', '-')}: a search's flag; nas-attn train chooses nothing "
                               f"(one arch, one trial per seed)")
        if chosen:
            raise NasAttnError(f"--{chosen[0].replace('_', '-')}: only with nas-attn train (a search numbers its "
                               f"positions at its space's input size, and trains with its recipe)")
        try:
            return cls(**flags)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else ""
            name = "seeds" if name == "trials" and flags.get("arch") is not None else name  # train's name
            flag = "--" + name.replace("_", "-") if name else "flags"
            got = "" if name == "recipe" else f" (got {err.get('input')!r})"  # the message names the item
            raise NasAttnError(f"{flag}: {err['msg'].removeprefix('Value error, ')}{got}") from None

    def given_arch(self) -> str | None:
        """``arch`` (``nas-attn train``) parsed and written again as compact JSON (``None``: a search)."""
        return None if self.arch is None else Arch.from_json(self.arch).to_json()

    def recipe_changes(self) -> dict[str, Any]:
        """``recipe`` as keyword arguments of :meth:`Recipe.replace` (values read as YAML; lists as tuples)."""
        changes = {}
        for item in self.recipe:
            key, _, value = item.partition("=")
            changes[key.strip()] = _recipe_value(value)
        return changes

    def budget_flags(self) -> set[str]:
        """The CPU budget's keys that flags set instead (``--trials``, ``--epochs``, ``--recipe lr=…``)."""
        given = {"trials": self.trials, "epochs": self.epochs, "concurrency": self.concurrency}
        return {k for k, v in given.items() if v is not None} | set(self.recipe_changes())

    def run_settings(self) -> RunSettings:
        return RunSettings(trials=self.trials, epochs=self.epochs, seed=self.seed, sampler=self.sampler,
                           strategy=self.strategy, concurrency=self.concurrency, cpus_per_trial=self.cpus_per_trial,
                           gpus_per_trial=self.gpus_per_trial, compile=self.compile, recipe=self.recipe_changes())

    def command_line(self, prog: str = "search.py") -> str:
        """A command line that gives these options (for "resume with …" messages); ``prog`` is put first as
        it is (already quoted for a shell)."""
        out = [prog, "--space", shlex.quote(self.space)]
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "space" or v is None or v is False or (f.name == "reevaluate_front" and v == 0):
                continue
            name = "seeds" if f.name == "trials" and self.arch is not None else f.name  # train's name for it
            flag = "--" + name.replace("_", "-")
            if isinstance(v, tuple):  # a repeated flag
                out += [part for item in v for part in (flag, shlex.quote(item))]
            else:
                out += [flag] if v is True else [flag, shlex.quote(str(v))]
        return " ".join(out)


def _recipe_value(text: str) -> Any:
    """A ``--recipe`` value as a space file would give it (YAML), lists as tuples; ``1e-3`` is a number here,
    though YAML 1.1 reads an exponent without a dot as a string."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return tuple(value) if isinstance(value, list) else value


def check_options_against_space(options: SearchOptions, space: SearchSpace) -> None:
    """What the flags cannot ask of this space (before anything runs)."""
    grace = space.asha_grace_period
    if options.epochs is not None and grace is not None and options.epochs < grace:
        raise NasAttnError(f"--epochs {options.epochs}: fewer than ASHA's grace period of {grace} epochs "
                           f"({space.path.name}: early_stopping)")
    if options.data_root is not None and not Path(options.data_root).expanduser().is_dir():
        raise NasAttnError(f"--data-root {options.data_root}: no such directory")
    if options.cache_dir is not None and Path(options.cache_dir).expanduser().exists() and \
            not Path(options.cache_dir).expanduser().is_dir():
        raise NasAttnError(f"--cache-dir {options.cache_dir}: not a directory")
    check_sampler(options, space)
    check_strategy(options.strategy or space.file.strategy.name, space)


def check_strategy(name: str, space: SearchSpace) -> None:
    """What a strategy needs of the space (before anything runs)."""
    if name == "scratch" or space.fixed is not None:
        return
    where = f"--strategy {name}" if name != space.file.strategy.name else f"{space.path.name}: strategy {name}"
    if space.asha is not None:
        raise NasAttnError(f"{where}: does not combine with the space's early_stopping (ASHA stops trials at the "
                           f"recipe's epochs; fine-tuning and retraining run other budgets)")
    if name == "inherit" and not space.vanilla_possible():
        raise NasAttnError(f"{where}: the space rules out the vanilla backbone (include_vanilla false, or a "
                           f"position without none), whose trained weights every arch would inherit")
    if name == "oneshot":
        _check_supernet(where, space)


def _check_supernet(where: str, space: SearchSpace) -> None:
    """The supernet can hold every choice of the space (built once here, on the CPU, before data or Ray)."""
    if "latency_ms" in space.objectives:
        raise NasAttnError(f"{where}: the supernet scores accuracy only; latency_ms as an objective needs each arch "
                           f"built and timed (use inherit or scratch)")
    from nas_attn.supernet import build_supernet  # imports torch: only a one-shot search pays for it

    try:
        build_supernet(space)
    except NasAttnError as exc:
        raise NasAttnError(f"{where}: {str(exc).removeprefix('oneshot: ')}") from None


def local_ray(options: SearchOptions) -> bool:
    """Whether the search starts its own Ray on this machine (no ``--address``, no ``$RAY_ADDRESS``)."""
    return not (options.address or os.environ.get("RAY_ADDRESS"))


def check_local_resources(options: SearchOptions, space: SearchSpace, cpus: float, gpus: float | None) -> None:
    """Refuse per-trial resources beyond a local Ray's ``cpus`` and ``gpus`` (``None``: not known): Ray would
    wait for them forever, the run folder written. A cluster may add nodes as trials ask, so it is not checked."""
    if not local_ray(options):
        return
    for kind, flag, key, have in (("CPU", "cpus_per_trial", "cpu", cpus), ("GPU", "gpus_per_trial", "gpu", gpus)):
        given = getattr(options, flag)
        need = given if given is not None else getattr(space, flag)
        if have is not None and have > 0 and need > have:  # no GPU at all: the plan runs the trials on CPUs
            where = f"--{flag.replace('_', '-')} {need:g}" if given is not None else \
                f"{space.path.name}: resources.{key} {need:g}"
            raise NasAttnError(f"{where}: more {kind}s per trial than this machine has ({have:g}); a local Ray "
                               f"would wait for them forever (lower it, or join a cluster with --address)")


def machine_resources() -> tuple[float, float | None]:
    """This machine's CPUs, and its GPUs when torch is already imported (else ``None``: importing it here
    would cost seconds before any check; :func:`make_plan` checks against Ray's count)."""
    torch = sys.modules.get("torch")
    gpus = float(torch.cuda.device_count()) if torch is not None else None
    return float(os.cpu_count() or 1), gpus


def check_sampler(options: SearchOptions, space: SearchSpace) -> None:
    """Make the run's sampler once, before anything runs: an unknown name, a factory that refuses its options
    or a sampler that cannot run here (Optuna's GPSampler without scipy) is one line now, not after Ray starts."""
    chosen = dataclasses.replace(space, sampler=options.sampler or space.sampler)
    create_sampler(chosen.sampler, chosen.sampler_request(chosen.sampler_seed))


@dataclass(frozen=True)
class DatasetInfo:
    """What the plan needs to know of the dataset (trials open its cache entry themselves)."""

    name: str
    source: str
    num_classes: int
    in_chans: int
    #: the decoded cache entry, and the side its images are stored at
    cache: str = ""
    side: int = 0
    #: in label order, where known (``nas_attn.probes.class_names``); labels show as numbers otherwise
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resources:
    """Per-trial resources and how many trials run at once, on the cluster Ray found."""

    cpus_per_trial: float
    gpus_per_trial: float
    concurrency: int
    cluster_cpus: float
    cluster_gpus: float

    @property
    def threads(self) -> int:
        """Torch threads of one trial."""
        return max(1, int(self.cpus_per_trial))


@dataclass(frozen=True)
class SearchPlan:
    """Everything a search does, decided before it starts; immutable."""

    options: SearchOptions
    space: SearchSpace
    run: RunFolder
    dataset: DatasetInfo
    resources: Resources
    budget_note: str | None

    @property
    def tune_root(self) -> str:
        """Ray Tune's experiment root: ``--storage-path`` (shared by all nodes) or the run folder."""
        if self.options.storage_path:
            return self.options.storage_path.rstrip("/") + f"/{self.space.name}/{self.run.path.name}"
        return str(self.run.path / "tune")

    @property
    def new_study_name(self) -> str:
        """The name of a new run's study: the space's in the run's own journal file; the space's and the run
        id's in a ``--storage`` database, which other runs share (of this space, or ``nas-attn train`` of other
        archs). A resumed run keeps the name its manifest recorded."""
        return f"{self.space.name}/{self.run.path.name}" if self.options.storage else self.space.name

    @property
    def storage_scheme(self) -> str | None:
        """The URI scheme of checkpoints (``None``: a local path)."""
        path = self.options.storage_path
        return urlparse(path).scheme or None if path and "://" in path else None


def make_plan(options: SearchOptions, space: SearchSpace, run: RunFolder, data: DatasetInfo,
              cluster: dict[str, float], cpu_budget: bool | None = None) -> SearchPlan:
    """The plan of a search on ``cluster`` (Ray's ``cluster_resources()``).

    Without a GPU the space's CPU budget applies unless ``--full-budget``; flags win over both. ``cpu_budget``
    decides instead (a resume keeps the budget its run started with, on whatever machine it resumes).
    """
    gpus = float(cluster.get("GPU", 0))
    check_local_resources(options, space, float(cluster.get("CPU", 0)), gpus)
    has_budget = space.file.cpu_budget is not None
    why = "no GPU" if cpu_budget is None else "resumed as the run started"
    cpu_budget = has_budget and (gpus == 0 and not options.full_budget if cpu_budget is None else cpu_budget)
    run_space = space.for_run(options.run_settings(), cpu_budget=cpu_budget, num_classes=data.num_classes,
                              in_chans=data.in_chans)
    if gpus == 0:
        run_space = dataclasses.replace(run_space, gpus_per_trial=0.0)
    cpus = run_space.cpus_per_trial
    fit = gpus / run_space.gpus_per_trial if run_space.gpus_per_trial else float(cluster.get("CPU", 1)) / cpus
    # never more at once than there are trials (a `nas-attn train` of one seed runs one)
    concurrency = min(run_space.concurrency or max(1, math.floor(fit)), run_space.trials)
    resources = Resources(cpus, run_space.gpus_per_trial, concurrency, float(cluster.get("CPU", 0)), gpus)
    note = space.cpu_budget_note(options.budget_flags(), why) if cpu_budget else None
    return SearchPlan(options, run_space, run, data, resources, note)
