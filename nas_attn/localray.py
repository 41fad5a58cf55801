"""A local Ray node in a session of its own, for the search's driver to join.

Why not ``ray.init(address="local")`` in the driver: Ray then starts its GCS, raylet and workers as children
in the driver's process group, so a signal sent to the whole group (``timeout``, systemd, Slurm, ``docker
stop``, ``kill -TERM -PGID``) kills Ray before the driver can stop the search cleanly; the driver's core
worker then ends the process 60 s later on "Failed to connect to GCS" (exit 1, no resume command, the run
folder left ``running``). Ray offers no option to start a local node in a new session, so a small launcher
process does: it starts the node with ``ray.init`` inside a new session (``start_new_session=True``), prints
the node's address and waits. The driver joins that address. The launcher shuts the node down when its
standard input closes — when the driver ends, however it ends (kill -9 included), which also ends Ray's
dashboard and runtime-env agents at once instead of leaving them alive for a minute.

Run as ``python -m nas_attn.localray`` only by :func:`local_ray_node`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nas_attn.errors import NasAttnError

#: how long the node may take to start (Ray's own start-up, on a loaded 2-core machine, takes 5-20 s)
START_TIMEOUT_S = 120.0
#: how long the launcher may take to shut the node down once the driver is done with it
STOP_TIMEOUT_S = 30.0


@contextmanager
def local_ray_node(log_path: Path | None = None) -> Iterator[str]:
    """Start a local Ray node in its own session; yield its address (``IP:PORT``) for ``ray.init``.

    ``log_path`` receives the launcher's own output (Ray's start-up warnings); by default it is discarded.
    """
    log = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "nas_attn.localray"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    try:
        address = _read_address(proc)
        yield address
    finally:
        _stop(proc)


def _read_address(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line:
                return json.loads(line)["address"]
        if proc.poll() is not None:
            raise NasAttnError(f"the local Ray node did not start (its launcher exited with {proc.returncode})")
    raise NasAttnError(f"the local Ray node did not start within {START_TIMEOUT_S:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    """Close the launcher's standard input (it then shuts Ray down) and wait for it; kill it if it hangs."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    proc.stdout.close()


def _serve() -> int:
    """The launcher: start the node, print its address, hold it until standard input closes."""
    import logging

    import ray

    # A signal sent to the launcher itself (not the driver's group) also ends the node cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the driver, which stops the search
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        address = ray.get_runtime_context().gcs_address
        sys.stdout.write(json.dumps({"address": address}) + "\n")
        sys.stdout.flush()
        while True:  # EOF on stdin: the driver is gone (closed it, exited, or was killed)
            ready, _, _ = select.select([sys.stdin], [], [], 5.0)
            if ready and not os.read(sys.stdin.fileno(), 4096):
                return 0
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(_serve())
