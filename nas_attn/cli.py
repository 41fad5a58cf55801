"""Command-line plumbing shared by every ``nas-attn`` command and ``search.py``.

- A wrong flag or bad input (:class:`~nas_attn.errors.NasAttnError`) is one line on stderr and exit status 2.
- An unexpected error is one line naming what failed, with the full traceback written to a log file
  (``--debug`` prints it instead) and exit status 1.
- Ctrl-C is one line and exit status 130.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from nas_attn.dirs import user_cache
from nas_attn.errors import NasAttnError
from nas_attn.lean import leave_out_triton_without_gpu

#: where the tracebacks of unexpected errors go (``$NAS_ATTN_LOG_DIR`` moves it)
LOG_DIR = Path(os.environ.get("NAS_ATTN_LOG_DIR") or user_cache() / "logs")


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a wrong flag in one line (``prog: error: …``) with exit status 2.

    Every parser (and sub-parser) also takes ``--debug``: show the traceback of an unexpected error.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="print the full traceback of an unexpected error instead of logging it")

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("NAS_ATTN_DEBUG", "") not in ("", "0")


def write_traceback_log(prog: str, text: str) -> Path | None:
    """Write ``text`` to a new log file under :data:`LOG_DIR`; ``None`` if that is impossible."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in prog)
    try:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = LOG_DIR / f"{name}-{stamp}.log"
        path.write_text(text)
        return path
    except OSError:
        return None


def run_cli(fn: Callable[[], int | None], prog: str, debug: bool | None = None) -> int:
    """Run ``fn`` and turn what it raises into one line on stderr and an exit status."""
    debug = debug_requested() if debug is None else debug
    leave_out_triton_without_gpu()  # this process and the Ray workers it starts (nas_attn/lean.py)
    try:
        status = fn() or 0
        if sys.stdout is not None:  # output that cannot be written (a full disk) fails here, not in Python's exit
            sys.stdout.flush()
        return status
    except NasAttnError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``nas-attn positions … | head``): stop quietly, as Unix tools do
        _drop_stdout()
        return 141
    except KeyboardInterrupt as exc:  # Ctrl-C, or a search stopped cleanly on a signal (its message says how to resume)
        print(f"{prog}: interrupted{': ' + str(exc) if str(exc) else ''}", file=sys.stderr)
        return getattr(exc, "exit_status", 130)
    except Exception as exc:  # a bug or an environment problem: one line, the traceback kept
        return _unexpected(exc, prog, debug)


def _drop_stdout() -> None:
    """Point stdout at the null device: what is left in its buffer would fail again, and be reported, at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _unexpected(exc: Exception, prog: str, debug: bool) -> int:
    text = traceback.format_exc()
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError:  # stdout itself is what failed: the one line below is all that is said
        _drop_stdout()
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if debug:
        print(text, file=sys.stderr, end="")
        print(f"{prog}: unexpected error: {what}", file=sys.stderr)
        return 1
    log = write_traceback_log(prog, text)
    where = f"full traceback in {log}" if log else "run again with --debug for the traceback"
    print(f"{prog}: unexpected error: {what} ({where})", file=sys.stderr)
    return 1
