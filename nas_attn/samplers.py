"""Optuna samplers by name, swappable as Optuna's own are: a registry (name → factory) holding the built-in
ones, which a user's code may add to (:func:`register_sampler`), and factories named by import path in a
space file (``sampler: {name: "my_package.samplers:make_sampler", options: {...}}``, ``docs/search.md``).

A factory takes a :class:`SamplerRequest` (the seed, the space file's ``sampler.options``, the run's trial
budget) and returns an ``optuna.samplers.BaseSampler``. Importing this module is torch- and Optuna-free: the
space file is checked before either is imported.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nas_attn.errors import NasAttnError

if TYPE_CHECKING:
    import optuna

#: ``package.module:attribute``: a factory named by import path
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class SamplerRequest:
    """What a sampler factory is given.

    Attributes:
        seed: the sampler's seed (the space's ``sampler.seed`` or ``--seed``, moved on at each resume so that a
            resumed run does not propose its first archs again).
        options: the space file's ``sampler.options`` (``population_size`` included for ``nsga2``).
        trials: the run's trial budget.
    """

    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    trials: int = 32


SamplerFactory = Callable[[SamplerRequest], "optuna.samplers.BaseSampler"]

_REGISTRY: dict[str, SamplerFactory] = {}


def register_sampler(name: str, factory: SamplerFactory) -> None:
    """Make ``factory`` the sampler called ``name`` (a space's ``sampler.name``); a module listed in a space
    file's ``imports:`` may call it. Re-registering a name replaces it."""
    if not re.fullmatch(r"[A-Za-z_][\w-]*", name):
        raise ValueError(f"sampler name {name!r}: letters, digits, '_' and '-' only")
    _REGISTRY[name] = factory


def sampler_names() -> tuple[str, ...]:
    """The registered samplers, the built-in ones first."""
    return tuple(_REGISTRY)


def check_sampler_name(name: str) -> str:
    """``name`` if it can name a sampler: a registered one or an import path (found later: see
    :func:`resolve_sampler`); else a :class:`ValueError` saying what is accepted."""
    if name in _REGISTRY or IMPORT_PATH.match(name):
        return name
    raise ValueError(f"unknown sampler {name!r}: one of {', '.join(_REGISTRY)}, or a factory's import path "
                     f"('package.module:function')")


def resolve_sampler(name: str) -> SamplerFactory:
    """The factory called ``name``: a registered sampler, or the callable at an import path.

    Raises:
        NasAttnError: one line: an unknown name, a module that cannot be imported, no such attribute, or one
            that is not callable.
    """
    try:
        check_sampler_name(name)
    except ValueError as exc:
        raise NasAttnError(str(exc)) from None
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, _, attribute = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise NasAttnError(f"sampler {name!r}: cannot import {module_name!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise NasAttnError(f"sampler {name!r}: {module_name} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise NasAttnError(f"sampler {name!r}: {attribute!r} is not callable (a factory taking a SamplerRequest)")
    return target


def create_sampler(name: str, request: SamplerRequest) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` makes for ``request``.

    Raises:
        NasAttnError: one line: the name cannot be resolved, the factory refuses its options, or it returns
            something other than an Optuna sampler.
    """
    import optuna

    factory = resolve_sampler(name)
    try:
        sampler = factory(request)
    except NasAttnError:
        raise
    except Exception as exc:  # e.g. an option the sampler does not take (TypeError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise NasAttnError(f"sampler {name!r}: {type(exc).__name__}: {first}") from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise NasAttnError(f"sampler {name!r}: the factory returned {type(sampler).__name__}, not an "
                           f"optuna.samplers.BaseSampler")
    return sampler


# -- the built-in samplers ----------------------------------------------------------------------------------

def _nsga2(request: SamplerRequest) -> optuna.samplers.BaseSampler:
    import optuna

    options = dict(request.options)
    return optuna.samplers.NSGAIISampler(seed=request.seed, population_size=options.pop("population_size", None)
                                         or 16, **options)


def _tpe(request: SamplerRequest) -> optuna.samplers.BaseSampler:
    import optuna

    # multivariate and grouped: the choices at one position depend on each other (module, op, groups)
    options = {"multivariate": True, "group": True, "n_startup_trials": min(10, max(2, request.trials // 4)),
               **request.options}
    return optuna.samplers.TPESampler(seed=request.seed, **options)


def _random(request: SamplerRequest) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=request.seed, **request.options)


def _gp(request: SamplerRequest) -> optuna.samplers.BaseSampler:
    import importlib.util

    import optuna

    if not hasattr(optuna.samplers, "GPSampler"):
        raise NasAttnError(f"sampler gp: this Optuna ({optuna.__version__}) has no GPSampler")
    if importlib.util.find_spec("scipy") is None:
        raise NasAttnError("sampler gp: Optuna's GPSampler needs scipy (pip install scipy)")
    return optuna.samplers.GPSampler(seed=request.seed, **request.options)


for _name, _factory in (("nsga2", _nsga2), ("tpe", _tpe), ("random", _random), ("gp", _gp)):
    register_sampler(_name, _factory)

#: the built-in samplers (what ``--sampler`` offers)
BUILTIN_SAMPLERS = sampler_names()
