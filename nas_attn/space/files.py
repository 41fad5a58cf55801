"""Where space files are found: a path, ``./search_spaces/NAME.yaml``, or the spaces shipped with nas-attn.

The shipped spaces are package data (``nas_attn/search_spaces`` links to the repository's
``search_spaces/``), so a named space works after ``pip install .`` from any directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nas_attn.errors import SpaceError


def shipped_spaces_dir() -> Path:
    """The folder of the spaces that ship with nas-attn."""
    return Path(str(resources.files("nas_attn") / "search_spaces"))


def space_folders() -> list[Path]:
    """Where a space name is looked up, first match wins."""
    return [Path("search_spaces"), shipped_spaces_dir()]


def known_spaces() -> list[str]:
    return sorted({f.stem for folder in space_folders() if folder.is_dir() for f in folder.glob("*.yaml")})


def resolve_space_path(name_or_path: str) -> Path:
    """A space given by name or by path; one-line :class:`SpaceError` when there is none."""
    if not name_or_path or "\x00" in name_or_path:
        raise SpaceError(f"--space {name_or_path!r}: not a space name or file")
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path or p.exists():
        if not p.is_file():
            raise SpaceError(f"{p}: no such space file")
        return p
    for folder in space_folders():
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise SpaceError(f"unknown space {name_or_path!r} (known: {', '.join(known_spaces())}; or give a .yaml path)")
