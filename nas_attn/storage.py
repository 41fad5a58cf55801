"""Run-folder safety. (Placeholder: the storage helper's branch brings the journal and lock parts.)"""

from __future__ import annotations

from nas_attn.errors import NasAttnError


def check_folder_name(value: str, what: str) -> str:
    """``value`` if it is a plain folder name, else a one-line :class:`NasAttnError` naming ``what``."""
    bad = (not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value
           or value.startswith("-") or any(ord(c) < 32 for c in value) or len(value.encode()) > 255)
    if bad:
        raise NasAttnError(f"{what} {value!r}: must be a plain folder name")
    return value
