"""A throwaway PostgreSQL server for the tests: Debian's binaries, its own cluster in a temporary folder,
listening on 127.0.0.1 and a unix socket in that folder only, stopped at the end.

PostgreSQL refuses to run as root (and CI runs as root), so there the binaries run as the ``postgres``
system user, in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def bindir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl`` (newest installed version), or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


def unavailable() -> str | None:
    """Why no server can be started here (for a skip), or ``None``."""
    if bindir() is None:
        return "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    r = subprocess.run(_as_owner(cmd), capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout[-1500:]}{r.stderr[-1500:]}")


@contextmanager
def postgres_server(db: str = "nas") -> Iterator[str]:
    """Start a cluster, create ``db``; yields its SQLAlchemy URL (psycopg2 driver, trust authentication)."""
    bin_ = bindir()
    assert bin_ is not None, unavailable()
    root = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER") or "postgres"
    try:
        _run([str(bin_ / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"])
        _run([str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "start",
              "-o", f"-h 127.0.0.1 -p {port} -k {root} -F"])
        _wait_ready(bin_, port, user)
        _run([str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db])
        yield f"postgresql+psycopg2://{user}@127.0.0.1:{port}/{db}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_owner([str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(bin_: Path, port: int, user: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([str(bin_ / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", user],
                           capture_output=True, timeout=30)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL on port {port} not ready after {timeout:g} s")
