"""What a search sets in its own process, and the Ray session it runs in.

Everything a search changes process-wide (environment defaults, Optuna's verbosity, the Ray loggers) is set
here, by :func:`process_settings`, and undone when the search returns or raises: :func:`~nas_attn.run_search`
called from a user's own Python process leaves it as it was.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

from nas_attn.errors import NasAttnError

#: environment defaults a search needs (a value the user set is kept)
ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter honours verbose=0
    # A failed trial's last result has no val_acc; ASHA skips such results, but Tune's strict check would
    # abort the whole search on it.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}


class ProcessSettings:
    """The process-wide changes of one search, each recorded with what undoes it."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def apply_defaults(self) -> None:
        for key, value in ENV_DEFAULTS.items():
            if key not in os.environ:
                os.environ[key] = value
                self._undo.append(lambda key=key: os.environ.pop(key, None))
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._undo.append(lambda: optuna.logging.set_verbosity(level))

    def log_ray_to(self, path: Path) -> None:
        """Ray's and Tune's own log records go to a file in the run folder, not the terminal: a failing trial is
        already recorded (reason, traceback) by nas-attn, and the terminal keeps one line per event."""
        ray_logger = logging.getLogger("ray")
        for handler in ray_logger.handlers:
            self._undo.append(lambda handler=handler, level=handler.level: handler.setLevel(level))
            handler.setLevel(logging.CRITICAL)
        handler = logging.FileHandler(path, delay=True)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ray_logger.addHandler(handler)
        self._undo.append(lambda: (ray_logger.removeHandler(handler), handler.close()))
        raise_exceptions = logging.raiseExceptions
        logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks of its own
        self._undo.append(lambda: setattr(logging, "raiseExceptions", raise_exceptions))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


@contextmanager
def process_settings() -> Iterator[ProcessSettings]:
    """The environment defaults and Optuna's verbosity for a search; on exit every change made through the
    yielded :class:`ProcessSettings` (the Ray log file included) is undone."""
    settings = ProcessSettings()
    try:
        settings.apply_defaults()
        yield settings
    finally:
        settings.undo()


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """A local Ray, or the cluster at ``address`` (``auto`` or ``HOST:PORT``, refused at once if closed).

    Without ``--address``, Ray's own ``$RAY_ADDRESS`` is honoured (a Ray job's entrypoint has it).
    """
    import ray  # here: a search stopped by bad input never imports Ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        probe(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:
            raise NasAttnError(f"--address {address}: cannot join the Ray cluster ({exc})") from None
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def probe(address: str) -> None:
    """Fail within seconds on a closed ``HOST:PORT`` (Ray itself waits minutes for a cluster that is not there)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise NasAttnError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None
