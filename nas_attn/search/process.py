"""What a search sets in its own process, and the Ray session it runs in.

Everything a search changes process-wide (environment defaults, Optuna's verbosity, the Ray loggers) is set
here, by :func:`process_settings`, and undone when the search returns or raises: :func:`~nas_attn.run_search`
called from a user's own Python process leaves it as it was.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import optuna

from nas_attn.errors import NasAttnError
from nas_attn.localray import local_ray_node

#: environment defaults a search needs (a value the user set is kept)
ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_AIR_NEW_OUTPUT": "0",  # the legacy reporter honours verbose=0
    # A failed trial's last result has no val_acc; ASHA skips such results, but Tune's strict check would
    # abort the whole search on it.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Read by glibc when Ray's processes start (this process's allocator is set up already). Tune runs each
    # trial in a new thread of a reused worker process, and glibc gives each thread a heap ("arena") of its
    # own: freed activations stayed behind in the last trial's arena, so a worker grew by about 300 MB a trial
    # (smoke space, 4 trials a worker: 1.2 -> 2.0 GB); with two arenas its peak stays at 1.3 GB, at the same
    # speed (scripts/bench_search.py). A cluster's nodes get it from `ray start` (scripts/cluster*.yaml).
    "MALLOC_ARENA_MAX": "2",
    # Tune's automatic loggers include TensorBoard's, whose tensorboardX imports torch into the driver (800 MB
    # for event files nothing reads: the dashboard reads the study); its CSV and JSON loggers are added by
    # nas_attn.search.tuning instead (issue 23)
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
#: environment a search sets whatever its value was: Tune installs its own SIGINT handler unless told not to,
#: and the search's (nas_attn.stopping.StopRequest) must stay in place
ENV_FORCED = {"TUNE_DISABLE_SIGINT_HANDLER": "1"}


class ProcessSettings:
    """The process-wide changes of one search, each recorded with what undoes it."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def apply_defaults(self) -> None:
        for key, value in ENV_DEFAULTS.items():
            if key not in os.environ:
                self._setenv(key, value)
        for key, value in ENV_FORCED.items():
            self._setenv(key, value)
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._undo.append(lambda: optuna.logging.set_verbosity(level))

    def _setenv(self, key: str, value: str) -> None:
        self._undo.append(functools.partial(_set_env, key, os.environ.get(key)))
        os.environ[key] = value

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
    environ = dict(os.environ)  # also what the libraries the search runs set on their own is given back
    try:
        settings.apply_defaults()
        yield settings
    finally:
        settings.undo()
        for key in set(os.environ) | set(environ):
            _set_env(key, environ.get(key))


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """A local Ray, or the cluster at ``address`` (``auto`` or ``HOST:PORT``, refused at once if closed).

    Without ``--address``, Ray's own ``$RAY_ADDRESS`` is honoured (a Ray job's entrypoint has it).
    """
    import ray  # here: a search stopped by bad input never imports Ray

    # ray.init sets variables (PYTHONBREAKPOINT) and the "ray" logger's level that ray.shutdown leaves
    environ, level = dict(os.environ), logging.getLogger("ray").level
    address = address or os.environ.get("RAY_ADDRESS")
    with ExitStack() as stack:
        try:
            if address:
                probe(address)
                try:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
                except Exception as exc:
                    raise NasAttnError(f"--address {address}: cannot join the Ray cluster ({exc})") from None
            else:
                # Ray's processes in a session of their own: a signal to the driver's process group stops the
                # search cleanly instead of killing Ray under it (nas_attn/localray.py says why).
                node = stack.enter_context(local_ray_node())
                ray.init(address=node, log_to_driver=False, logging_level=logging.WARNING)
            yield
        finally:  # also after a failed ray.init: a half-made connection would refuse the next one
            ray.shutdown()
            for key in set(os.environ) | set(environ):
                _set_env(key, environ.get(key))
            logging.getLogger("ray").setLevel(level)


def _set_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    elif os.environ.get(key) != value:
        os.environ[key] = value


def probe(address: str) -> None:
    """Fail within seconds on a closed ``HOST:PORT`` (Ray itself waits minutes for a cluster that is not there)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise NasAttnError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None
