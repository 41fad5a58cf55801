"""Name → constructor registry of attention modules.

Every module maps (B, m, h, w) → (B, m, h, w). A registered entry says whether the module is split into
channel groups; :func:`create` checks ``groups`` against ``channels`` before constructing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from nas_attn.errors import ModuleConfigError


@dataclass(frozen=True)
class ModuleEntry:
    """A registered module: its constructor ``fn(channels, groups, **kwargs)`` and how it uses groups."""

    name: str
    fn: Callable[..., nn.Module]
    takes_groups: bool
    default_groups: int | None
    source: str
    #: the largest h*w map the module may attend over (its cost grows with (h*w)^2); None: no limit
    max_positions: int | None = None


_REGISTRY: dict[str, ModuleEntry] = {}


def register_module(
    name: str, *, takes_groups: bool = False, default_groups: int | None = None, source: str = "nas_attn",
    max_positions: int | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``fn(channels, groups=None, **kwargs) -> nn.Module`` under ``name``.

    Third-party code can register its own modules the same way; a search space lists such a module's
    Python module under ``imports:`` so that every Ray worker registers it too.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ModuleConfigError(f"attention module {name!r} is already registered")
        _REGISTRY[name] = ModuleEntry(name, fn, takes_groups, default_groups, source, max_positions)
        return fn

    return decorator


def list_modules() -> list[str]:
    """Registered module names, sorted (``none`` is not a module: it means no placement)."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModuleEntry:
    """The registry entry of ``name``; raises :class:`ModuleConfigError` for an unknown name."""
    try:
        return _REGISTRY[name]
    except KeyError:
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


def create(name: str, channels: int, groups: int | None = None, **kwargs) -> nn.Module:
    """Create attention module ``name`` for ``channels`` channels.

    Args:
        name: a registered name (see :func:`list_modules`).
        channels: number of input (= output) channels m.
        groups: channel groups for modules that split channels (``ulsam``, ``ulsam_official``, ``lgam``);
            ``None`` takes the module's default. Must divide ``channels``.
        **kwargs: module-specific options (e.g. ``reduction`` for ``lgam``/``csm``/``bam``/``la``).

    Raises:
        ModuleConfigError: unknown name, groups that do not divide the channels, or bad options.
    """
    if not isinstance(channels, int) or channels < 1:
        raise ModuleConfigError(f"module {name!r}: channels must be a positive integer, got {channels!r}")
    entry = get_entry(name)
    g = resolve_groups(name, channels, groups)
    try:
        return entry.fn(channels, g, **kwargs) if entry.takes_groups else entry.fn(channels, **kwargs)
    except TypeError as exc:  # an unknown keyword argument
        raise ModuleConfigError(f"module {name!r}: {exc}") from None
