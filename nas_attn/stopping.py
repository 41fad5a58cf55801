"""Stopping a search cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal asks for a stop: before the run folder exists it interrupts at once (nothing is written
yet); while trials run, Ray Tune's public :class:`~ray.tune.Stopper` ends the experiment and the driver
records the running trials as interrupted (a resume runs them again); during the front's evaluation the
driver stops between tasks. The run's manifest then says ``interrupted`` and the process exits 130 (SIGINT)
or 143 (SIGTERM) with the exact command that resumes it. A second signal exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from ray import tune


class SearchInterrupted(KeyboardInterrupt):
    """The search stopped on a signal; ``exit_status`` is 128 + the signal number."""

    def __init__(self, signum: int, message: str = "") -> None:
        name = signal.Signals(signum).name
        super().__init__(f"{name}: {message}" if message else f"by {name}")
        self.signum, self.detail = signum, message

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class StopRequest(tune.Stopper):
    """Catches SIGINT and SIGTERM for the search's life (a context manager); also Tune's stopper."""

    def __init__(self) -> None:
        self.signum: int | None = None
        #: a failure that must end the search (e.g. the journal cannot be written); raised by the driver
        self.failure: Exception | None = None
        #: raise at the first signal (nothing written yet) instead of asking for a clean stop
        self.immediate = True
        self._previous: dict[int, object] = {}

    def __getstate__(self) -> dict:
        # Tune pickles its run config (the stopper included) for Tuner.restore, which nas-attn does not use
        return {"signum": self.signum, "immediate": self.immediate, "_previous": {}, "failure": None}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopRequest:
        # Tune installs its own SIGINT handler unless told not to: nas_attn.search.process sets
        # TUNE_DISABLE_SIGINT_HANDLER for the search, so that ours stays in place
        self.install()
        return self

    def install(self) -> None:
        """(Re)install the handlers: ``ray.init`` puts a handler of its own on SIGTERM, so the driver calls
        this again once Ray runs."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            print("search: second signal: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum = signum
        if self.immediate:
            raise SearchInterrupted(signum)
        print(f"search: {signal.Signals(signum).name}: stopping; running trials are recorded as interrupted "
              f"(again to exit at once)", file=sys.stderr, flush=True)

    def fail(self, exc: Exception) -> None:
        """End the search because of ``exc`` (the first failure is kept)."""
        if self.failure is None:
            self.failure = exc

    def check(self, message: str = "") -> None:
        """Raise :class:`SearchInterrupted` if a stop was asked for."""
        if self.signum is not None:
            raise SearchInterrupted(self.signum, message)

    # -- ray.tune.Stopper -------------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.requested or self.failure is not None
