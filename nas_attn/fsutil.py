"""Writing a file so that a kill, a full disk or a reader never sees half of it: the one place that does (and
the sha256 that later tells whether a file is still what was written)."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed onto ``path`` when the block ends without error.

    For writers that want a file name (parquet, ``np.savez``); :func:`write_atomic` for bytes or text. On an
    error (a full disk) the old file stays and the temporary one is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` through a temporary file and rename, so a kill never leaves half a file."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def file_digest(path: Path) -> str:
    """sha256 of a file's content."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


#: errors of a write that a resume recovers from once the file system has room again
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: how those errors read when a library re-raised them without ``errno`` (pyarrow's file systems, which Ray
#: Tune writes its checkpoints through, say "[errno 28] No space left on device" in the message only)
_WRITE_FAILURE_TEXTS = tuple(os.strerror(code) for code in WRITE_FAILURES)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write refused for lack of space or quota."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in WRITE_FAILURES:
            return True
        if isinstance(exc, OSError) and any(text in str(exc) for text in _WRITE_FAILURE_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
