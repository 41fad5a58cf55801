"""Where nas-attn keeps what it caches on the user's machine: one definition, read when called (so a changed
``$XDG_CACHE_HOME`` is honoured, in tests too)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/nas_attn`` (``~/.cache/nas_attn`` when it is unset or empty): torchvision downloads land
    here, decoded datasets under ``decoded/`` and the tracebacks of unexpected errors under ``logs/``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas_attn"


def decoded_cache() -> Path:
    """The default folder of decoded datasets (``--cache-dir`` moves it)."""
    return user_cache() / "decoded"
