"""Name → constructor registry of attention modules, with what validation needs to know about each.

Every module maps (B, m, h, w) → (B, m, h, w). An entry says whether the module splits channels into groups,
which keyword options it takes and how many h·w positions it may attend over. This module is torch-free:
built-in modules are registered by metadata and a lazy ``"package.module:function"`` constructor that is
imported on first :func:`create`, so that an arch or a space is validated without importing torch.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nas_attn.errors import ModuleConfigError

Factory = Callable[..., Any]


@dataclass(frozen=True)
class ModuleEntry:
    """A registered module.

    Attributes:
        name: the ``module`` of a placement.
        factory: ``fn(channels, [groups,] **options) -> nn.Module``, or ``"package.module:function"`` naming it
            (imported by :meth:`load`).
        takes_groups: the module splits its channels into ``groups`` (which must divide them).
        default_groups: the groups used when a placement gives none.
        source: the paper or library the module follows.
        max_positions: the most h·w positions the module may attend over (its cost grows with (h·w)²), or
            ``None`` for no limit. :meth:`nas_attn.Arch.validate` refuses placements beyond it.
        options: the keyword options the module accepts, or ``None`` when unknown until it is loaded.
    """

    name: str
    factory: Factory | str
    takes_groups: bool = False
    default_groups: int | None = None
    source: str = "nas_attn"
    max_positions: int | None = None
    options: tuple[str, ...] | None = None

    def load(self) -> Factory:
        """The constructor, importing its module the first time."""
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, ModuleEntry] = {}


def add_entry(entry: ModuleEntry) -> None:
    """Register ``entry``; raises :class:`ModuleConfigError` when its name is taken by another constructor."""
    old = _REGISTRY.get(entry.name)
    if old is not None and old.factory != entry.factory:
        raise ModuleConfigError(f"attention module {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def register_module(
    name: str, *, takes_groups: bool = False, default_groups: int | None = None, source: str = "nas_attn",
    max_positions: int | None = None,
) -> Callable[[Factory], Factory]:
    """Decorator registering ``fn(channels, groups=None, **kwargs) -> nn.Module`` under ``name``.

    Third-party code registers its own modules this way; a search space lists such a module's Python module
    under ``imports:`` so that every Ray worker registers it too. Its options are read from ``fn``'s signature.
    """

    def decorator(fn: Factory) -> Factory:
        add_entry(ModuleEntry(name, fn, takes_groups, default_groups, source, max_positions, _options_of(fn)))
        return fn

    return decorator


def _options_of(fn: Factory) -> tuple[str, ...] | None:
    params = list(inspect.signature(fn).parameters.values())[1:]  # after channels
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.name != "groups")


def list_modules() -> list[str]:
    """Registered module names, sorted (``none`` is not a module: it means no placement)."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModuleEntry:
    """The registry entry of ``name``; raises :class:`ModuleConfigError` for an unknown name."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ModuleConfigError(
            f"unknown attention module {name!r} (known: {', '.join(list_modules())})"
        ) from None


def resolve_groups(name: str, channels: int, groups: int | None) -> int | None:
    """The group count a module will use at ``channels``, or raise :class:`ModuleConfigError`."""
    entry = get_entry(name)
    if not entry.takes_groups:
        if groups not in (None, 1):
            raise ModuleConfigError(f"module {name!r} takes no groups (got groups={groups})")
        return None
    g = entry.default_groups if groups is None else groups
    if not isinstance(g, int) or isinstance(g, bool) or g < 1:
        raise ModuleConfigError(f"module {name!r}: groups must be a positive integer, got {groups!r}")
    if channels % g:
        raise ModuleConfigError(f"module {name!r}: groups={g} do not divide {channels} channels")
    return g


#: options that are counts (a channel reduction, an exponent, a dilation, a kernel size): positive integers
COUNT_OPTIONS = ("reduction", "key_reduction", "power", "dilation", "spatial_kernel_size")
#: options that are ratios of channels: numbers in (0, 1]
RATIO_OPTIONS = ("rd_ratio",)
#: options that take one of a few words, checked here so that a wrong one is refused without importing torch
CHOICE_OPTIONS = {"order": ("channel-first", "spatial-first")}


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`ModuleConfigError` for an option that module ``name`` does not take, or a count or ratio
    option out of range (checked here, torch-free, before anything is built)."""
    known = get_entry(name).options
    unknown = sorted(set(options) - set(known)) if known is not None else []
    if unknown:
        takes = f"takes {', '.join(known)}" if known else "takes no options"
        raise ModuleConfigError(f"module {name!r}: unknown option(s) {', '.join(unknown)} ({takes})")
    for key, value in options.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        got = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        # finite first: int() of inf or nan raises, and no option of any module means anything at inf or nan
        if isinstance(value, float) and not math.isfinite(value):
            raise ModuleConfigError(f"module {name!r}: {key} must be a finite number, got {got}")
        if key in COUNT_OPTIONS and not (number and value == int(value) and 1 <= value <= 1_000_000):
            raise ModuleConfigError(f"module {name!r}: {key} must be a positive integer, got {got}")
        if key in RATIO_OPTIONS and not (number and 0 < value <= 1):
            raise ModuleConfigError(f"module {name!r}: {key} must be a number in (0, 1], got {got}")
        if key in CHOICE_OPTIONS and value not in CHOICE_OPTIONS[key]:
            raise ModuleConfigError(f"module {name!r}: {key} must be one of {', '.join(CHOICE_OPTIONS[key])}, "
                                    f"got {got}")


def check_positions(name: str, side: int) -> None:
    """Raise :class:`ModuleConfigError` when a ``side``×``side`` map exceeds the module's ``max_positions``."""
    limit = get_entry(name).max_positions
    if limit is not None and side * side > limit:
        raise ModuleConfigError(f"{name} at a {side}x{side} map has {side * side} positions, over its limit of "
                                f"{limit} (its cost grows with (h*w)^2)")


def create(name: str, channels: int, groups: int | None = None, **kwargs) -> Any:
    """Create attention module ``name`` for ``channels`` channels (imports torch and the module's code).

    Args:
        name: a registered name (see :func:`list_modules`).
        channels: number of input (= output) channels m.
        groups: channel groups for modules that split channels (``ulsam``, ``ulsam_official``, ``lgam``,
            ``sge``); ``None`` takes the module's default. Must divide ``channels``.
        **kwargs: module options (e.g. ``reduction`` for ``lgam``/``csm``/``bam``/``la``, ``order`` for
            ``csm``); :func:`get_entry` ``(name).options`` lists them.

    Raises:
        ModuleConfigError: unknown name, groups that do not divide the channels, an unknown option or a value
            the module refuses.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ModuleConfigError(f"module {name!r}: channels must be a positive integer, got {channels!r}")
    g = resolve_groups(name, channels, groups)
    check_options(name, kwargs)
    fn = get_entry(name).load()
    if get_entry(name).options is None:  # a third-party module: its signature decides
        try:
            inspect.signature(fn).bind(channels, *([g] if g is not None else []), **kwargs)
        except TypeError as exc:
            raise ModuleConfigError(f"module {name!r}: {exc}") from None
    try:
        return fn(channels, g, **kwargs) if g is not None else fn(channels, **kwargs)
    except ModuleConfigError:  # the module's own one-line message says it best
        raise
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:  # an option value it cannot take
        options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no options"
        raise ModuleConfigError(f"module {name!r} cannot be built for {channels} channels with {options} "
                                f"({type(exc).__name__}: {exc})") from None
