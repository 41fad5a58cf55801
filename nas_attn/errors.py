"""Exceptions raised on bad input. Each carries a one-line message meant to be shown as is."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class NasAttnError(ValueError):
    """Base class of the errors that the command line reports in one line with exit status 2."""


class ModuleConfigError(NasAttnError):
    """An attention module cannot be created as asked (unknown name, groups that do not divide channels)."""


class ArchError(NasAttnError):
    """An arch is invalid; the message names the placement and the reason."""


class SpaceError(NasAttnError):
    """A search-space file is malformed; the message names the file, the key and the reason."""


class DataError(NasAttnError):
    """A dataset cannot be found or read."""


def validation_message(exc: ValidationError) -> str:
    """pydantic's first error as ``key.sub: reason (got value)``."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:  # a check of the whole file: its message names the keys
        return msg
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{key}: unknown key"
    if err["type"] == "missing":
        return f"{key}: missing"
    if err["type"] in ("value_error", "assertion_error"):  # our own checks: the message says it all
        return f"{key}: {msg}"
    got = err.get("input")
    shown = repr(got) if isinstance(got, (str, int, float, bool)) or got is None else type(got).__name__
    return f"{key}: {msg} (got {shown[:80]})"
