"""Command-line plumbing shared by ``python -m nas_attn`` and ``search.py``: one-line errors, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from nas_attn.errors import NasAttnError


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a wrong flag in one line (``prog: error: …``) with exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_cli(fn: Callable[[], int | None], prog: str) -> int:
    """Run ``fn``; turn a :class:`NasAttnError` into one line on stderr and exit status 2."""
    try:
        return fn() or 0
    except NasAttnError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
