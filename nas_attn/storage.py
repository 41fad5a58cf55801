"""A run folder that nothing corrupts or escapes: the study's journal survives a torn tail and a full disk,
one search writes a run folder at a time, and folder names stay plain.

The journal (``optuna.journal``) is one JSON record per line, appended by Optuna. A kill or a full disk
during an append leaves a torn last line; Optuna reads past it, but the next append lands on it and the
whole journal becomes unreadable. So:

- :func:`repair_journal`, before a resume opens the study, sets a torn last line aside in a side file
  (kept, never deleted) and truncates the journal to its last complete record; other damage is a one-line
  error naming the file.
- :class:`SafeJournalBackend` wraps Optuna's :class:`~optuna.storages.journal.JournalFileBackend`: an
  append that fails (``ENOSPC``, ``EFBIG``, …) truncates the file back to where it was, so nothing is ever
  appended onto a torn line, and stops the search with :class:`JournalWriteError`.
- :class:`RunLock` takes an exclusive ``flock`` on the run folder for the search's life (the operating
  system releases it if the process dies); readers (the dashboard, the tables) never need it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nas_attn.errors import NasAttnError
from nas_attn.records import Manifest

LOCK_FILE = ".lock"


class JournalWriteError(NasAttnError):
    """The journal could not be written (full disk, …); the file was left as it was before the write."""


def check_folder_name(value: str, what: str) -> str:
    """``value`` if it is a plain folder name, else a one-line :class:`NasAttnError` naming ``what``.

    Plain: not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no control characters, not starting with
    ``-`` (it would read as a flag), at most 255 bytes in UTF-8 (a file-name limit of every common file
    system). A space name or run id that passes cannot lead outside the results folder.
    """
    bad = (not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value
           or value.startswith("-") or any(ord(c) < 32 or ord(c) == 127 for c in value)
           or len(value.encode("utf-8", "surrogatepass")) > 255)
    if bad:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "...'"
        raise NasAttnError(f"{what} {shown}: must be a plain folder name")
    return value


# -- the journal ----------------------------------------------------------------------------------------

def _journal_records(path: Path, data: bytes) -> tuple[list[dict[str, Any]], int]:
    """(the complete records, the bytes they span from the start); a torn last line is left out.

    Raises:
        NasAttnError: a line before the last that is not JSON, or any complete line that is not a journal
            record (a JSON object with an integer ``op_code``), naming the file and the line.
    """
    records: list[dict[str, Any]] = []
    end = 0
    for line_no, line in enumerate(data.splitlines(keepends=True), 1):
        last = end + len(line) == len(data)
        if not line.endswith(b"\n"):
            break  # only the last line can lack its newline: a torn tail
        try:
            record = json.loads(line)
        except ValueError:
            if last:
                break  # a torn tail that happens to end in a newline byte
            raise NasAttnError(f"{path}: record {line_no} is not valid JSON, and records follow it: the journal "
                               f"is damaged (not a torn last write); {_RESTORE}") from None
        op = record.get("op_code") if isinstance(record, dict) else None
        if not isinstance(op, int) or isinstance(op, bool):
            raise NasAttnError(f"{path}: record {line_no} is not an Optuna journal record (a JSON object with an "
                               f"integer op_code): the journal is damaged; {_RESTORE}")
        records.append(record)
        end += len(line)
    return records, end


_RESTORE = "restore it from a copy, or start a new run"


def check_journal(path: Path) -> None:
    """Read the journal at ``path`` as a resume will, writing nothing: every complete record must be one
    Optuna can replay (a torn last record is allowed: :func:`repair_journal` sets it aside).

    Raises:
        NasAttnError: the first damaged record, in one line naming the file and the record.
    """
    if not path.is_file():
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NasAttnError(f"{path}: cannot read ({exc.strerror or exc})") from None
    records, _ = _journal_records(path, data)
    _replay(path, records)


class _Records:
    """The journal's records in memory, as Optuna's journal backend interface (``read_logs``,
    ``append_logs``) for its replay; counts what it read, to name a bad record."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records, self.read = records, 0

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        for number, record in enumerate(self.records[log_number_from:], log_number_from + 1):
            self.read = number
            yield record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise NasAttnError("the journal is only read here")


def _replay(path: Path, records: list[dict[str, Any]]) -> None:
    from optuna.storages.journal import JournalStorage

    backend = _Records(records)
    try:
        JournalStorage(backend)  # replays every record, as opening the study will
    except Exception as exc:  # Optuna's replay raises KeyError, TypeError, AssertionError … on a bad record
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise NasAttnError(f"{path}: record {backend.read} cannot be replayed by Optuna ({type(exc).__name__}: "
                           f"{detail}): the journal is damaged; {_RESTORE}") from None


def repair_journal(path: Path, say: Callable[[str], None] = print) -> Path | None:
    """Set a torn last record of the journal at ``path`` aside; return the side file (``None``: nothing torn).

    Raises:
        NasAttnError: a damaged record before the last one (not what a torn write leaves), in one line.
    """
    if not path.is_file():
        return None
    data = path.read_bytes()
    _, end = _journal_records(path, data)
    if end == len(data):
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    side = path.with_name(f"{path.name}.torn-{stamp}")
    side.write_bytes(data[end:])
    os.truncate(path, end)
    say(f"resume: {path.name} ended in a torn record ({len(data) - end} bytes, a write cut short); kept in "
        f"{side.name}, every complete record kept")
    return side


class SafeJournalBackend:
    """Optuna's journal file backend, made safe against failed appends (see the module docstring).

    It implements Optuna's public :class:`~optuna.storages.journal.BaseJournalBackend` interface
    (``read_logs``, ``append_logs``) by delegation.
    """

    def __init__(self, path: Path) -> None:
        from optuna.storages.journal import JournalFileBackend

        self.path = Path(path)
        self._backend = JournalFileBackend(str(self.path))

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return self._backend.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        size = self.path.stat().st_size
        try:
            self._backend.append_logs(logs)
        except OSError as exc:
            try:  # nothing may stay appended onto a torn line
                os.truncate(self.path, size)
            except OSError:
                pass
            raise JournalWriteError(f"cannot write {self.path} ({exc.strerror or exc}): the search stops, every "
                                    f"completed trial is kept") from None


def open_journal(path: Path):
    """An Optuna storage on the run's journal, through :class:`SafeJournalBackend`."""
    from optuna.storages.journal import JournalStorage

    return JournalStorage(SafeJournalBackend(path))


def check_study_present(run_dir: Path, journal: Path, manifest: Manifest) -> None:
    """Refuse to resume a run whose trials are recorded but whose journal is gone or empty: a new study
    there would attach the old front's test accuracies to new trials."""
    if manifest.ran_trials and not _complete_records(journal):
        raise NasAttnError(f"{journal}: missing or empty, but {run_dir.name} already ran trials: its study is "
                           f"lost; restore the journal from a copy, or start a new run")


def _complete_records(journal: Path) -> bool:
    """Whether ``journal`` holds a complete record: one that is only a torn tail (or random bytes without a
    newline) is empty once repaired, and is refused before the repair writes anything."""
    if not journal.is_file() or journal.stat().st_size == 0:
        return False
    _, end = _journal_records(journal, journal.read_bytes())
    return end > 0


# -- an RDB study (--storage URL) ------------------------------------------------------------------------

#: the PostgreSQL URL form the ``postgres`` extra's driver serves; a bare ``postgresql://`` means psycopg 3 to
#: SQLAlchemy 2.1 (psycopg2 to 2.0), so the driver is named in the URL
POSTGRES_URL = "postgresql+psycopg2://user:password@host:5432/db"


def check_storage_url(url: str, timeout: int = 5) -> None:
    """A one-line :class:`NasAttnError` unless ``url``'s driver is installed and its server answers, so a search
    with a wrong ``--storage`` stops before data is loaded or Ray starts (Optuna would find out only when it
    opens the study, after both). Nothing is written: an SQLite file is not created here (Optuna creates it),
    only its folder is checked; a server is asked for one connection, closed at once. A password in the URL is
    never shown.
    """
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise NasAttnError(f"--storage {hide_password(url)}: not a database URL ({exc})") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError) as exc:
        hint = (f"pip install 'nas-attn[postgres]' and write {POSTGRES_URL}" if backend == "postgresql"
                else f"install the Python driver for {parsed.drivername}")
        raise NasAttnError(f"--storage {shown}: no driver for {parsed.drivername} ({_one_line(exc)}): "
                           f"{hint}") from None
    if backend == "sqlite":
        folder = Path(parsed.database or "").parent
        if parsed.database not in (None, "", ":memory:") and not folder.is_dir():
            raise NasAttnError(f"--storage {shown}: folder {folder} does not exist")
        return
    _check_connects(parsed, shown, timeout)


def _check_connects(parsed, shown: str, timeout: int) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    # libpq and the MySQL drivers wait for an unreachable host as long as TCP does (minutes) unless told
    args = {"connect_timeout": timeout} if parsed.get_backend_name() in ("postgresql", "mysql") else {}
    engine = sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # OperationalError, InterfaceError, a driver's own: all mean "cannot use it"
        cause = getattr(exc, "orig", None) or exc
        raise NasAttnError(f"--storage {shown}: cannot connect ({_one_line(cause)})") from None
    finally:
        engine.dispose()


def hide_password(url: str) -> str:
    """``url`` as it may be shown or recorded: a database URL without its password (other text as is), so
    that what reads the recorded URL (the dashboard, export, a resume) connects with the password from
    ``PGPASSWORD`` or ``~/.pgpass`` rather than a placeholder; a relative SQLite file made absolute."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError

    try:
        u = sqlalchemy.engine.make_url(absolute_sqlite(url))
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: still no password shown
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    bare = sqlalchemy.engine.URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
    return bare.render_as_string(hide_password=False)


def absolute_sqlite(url: str) -> str:
    """A relative SQLite file (``sqlite:///study.db``) made absolute: the command may be run elsewhere."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/") or url == prefix + ":memory:":
        return url
    return prefix + str(Path(url[len(prefix):]).resolve())


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


# -- one writer per run folder --------------------------------------------------------------------------

class RunLock:
    """An exclusive lock on a run folder for a search's life (a context manager).

    ``fcntl.flock`` on ``RUN_DIR/.lock``: held as long as the file stays open, released by the operating
    system when the process ends, however it ends. The file records the holder's PID and start time.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a directory (or an unwritable file) where the lock file goes
            raise NasAttnError(f"{self.path}: cannot open the run folder's lock file ({exc.strerror or exc}); "
                               f"remove it if no search runs there") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise NasAttnError(f"{self.path.parent} is in use by another search ({holder}); wait for it to end, "
                               f"or use another --run-id") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"PID {os.getpid()}, started {dt.datetime.now().isoformat(timespec='seconds')}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
