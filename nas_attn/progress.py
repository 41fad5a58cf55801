"""What a search shows while it runs: each running trial's epoch, images/s and validation accuracy, a line
per finished trial, and an overall line with the front so far and an ETA estimated from the epochs done.

The ETA is remaining epochs × the mean measured epoch time ÷ the trials at once, fixed as a finish time when it
is estimated, so that between estimates it counts down. A new estimate may move it later only once a trial
has finished: with no trial finished it never moves up (past the finish time it says how far overdue). While
fewer than two epochs are measured (the first includes a trial's start-up) it is shown as a range.

On a terminal the display is live (``rich``), with timers that move every second, so a slow machine is
not mistaken for a hung one; when the output is not a terminal (a log, ``ray job logs``) it is plain lines
at a sensible rate; ``--quiet`` shows nothing but the final table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nas_attn.arch import Arch
from nas_attn.records import TrialAttrs, TrialReport, TrialStatus
from nas_attn.results import interrupted_trials, pareto_mask, trial_status
from nas_attn.strategy import is_prediction

#: seconds between status lines when the output is not a terminal
LINE_EVERY = 60.0


def hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


@dataclass
class RunningTrial:
    number: int | str
    placements: str
    started: float
    epoch: int = 0
    last_epoch_at: float | None = None  #: when its last epoch was reported (``None``: none yet)
    images_per_s: float | None = None
    val_acc: float | None = None


class Progress(Callback):
    """A Ray Tune callback that shows the search (see the module docstring).

    Args:
        study: the run's study (counts and the front so far come from it).
        budget: trials to finish; ``epochs``: epochs per trial; ``concurrency``: trials at once.
        finished_before: trials already finished when this attempt started (a resume).
        mode: ``live``, ``lines`` or ``quiet``; default: ``live`` on a terminal, else ``lines``.
    """

    def __init__(self, study, budget: int, epochs: int, concurrency: int, finished_before: int = 0,
                 mode: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.study, self.budget, self.epochs = study, budget, epochs
        self.concurrency, self.finished_before = max(1, concurrency), finished_before
        self.mode = mode or ("live" if sys.stdout.isatty() else "lines")
        self.console = Console(highlight=False)
        self.running: dict[str, RunningTrial] = {}
        self.epochs_done = 0
        self.clock = clock
        self.t0 = clock()
        self.epoch_seconds: list[float] = []  #: each measured epoch's wall time in its trial
        self.finish_at: float | None = None  #: the estimated end of the search
        self.finished_since_estimate = False
        self.last_line = 0.0
        self.live: Live | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its run config (callbacks included) for Tuner.restore, which nas-attn does not use;
        # the console and the live display hold locks and cannot be pickled
        return {k: v for k, v in self.__dict__.items() if k not in ("console", "live", "study")}

    # -- what is shown --------------------------------------------------------------------------
    def _counts(self) -> dict[TrialStatus, int]:
        counts: dict[TrialStatus, int] = {}
        interrupted = interrupted_trials(self.study)
        for t in self.study.get_trials(deepcopy=False):
            s = trial_status(t, interrupted)
            counts[s] = counts.get(s, 0) + 1
        return counts

    def _front(self) -> str:
        attrs = [TrialAttrs.of(t, history=False) for t in self.study.get_trials(deepcopy=False)
                 if trial_status(t) is TrialStatus.COMPLETE]
        pts = [(a.val_acc_final, a.flops) for a in attrs if not is_prediction(a.evaluation)]  # trained figures only
        pts = [p for p in pts if None not in p]
        if not pts:
            return "-"
        best = sorted({p for p, m in zip(pts, pareto_mask(pts, ["maximize", "minimize"]), strict=True) if m},
                      key=lambda p: p[1])
        return ", ".join(f"{a:.3f}@{f / 1e6:.1f}M" for a, f in best[:5]) + (" …" if len(best) > 5 else "")

    def _remaining_epochs(self, done: int) -> int:
        return max(0, self.budget - done) * self.epochs - sum(r.epoch for r in list(self.running.values()))

    def estimate(self, done: int) -> None:
        """Fix the finish time from the epochs measured so far (see the module docstring: it moves later only
        after a trial finished). ASHA's early stops make it an upper bound."""
        if not self.epoch_seconds:
            return
        now = self.clock()
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        finish_at = now + self._remaining_epochs(done) * mean / self.concurrency
        if self.finish_at is None or finish_at < self.finish_at or self.finished_since_estimate:
            self.finish_at = finish_at
        self.finished_since_estimate = False

    def eta(self, done: int) -> str:
        """The time left to the estimated finish: a range while fewer than two epochs are measured."""
        if self.finish_at is None:
            return "estimating…"
        if self._remaining_epochs(done) <= 0:
            return "0m00s"
        left = self.finish_at - self.clock()
        if left <= 0:  # slower than measured: said so, and estimated again when the next trial finishes
            return f"overdue by {hms(-left)}"
        if len(self.epoch_seconds) < 2:  # one epoch, with its trial's start-up in it: later ones are faster
            return f"~{hms(left / 2)}–{hms(left)}"
        return f"~{hms(left)}"

    def _done(self) -> int:
        return sum(n for s, n in self._counts().items() if s.finished)

    def status_line(self) -> str:
        c = self._counts()
        done = sum(n for s, n in c.items() if s.finished)
        parts = [f"{c.get(s, 0)} {s.value}" for s in (TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED)]
        if c.get(TrialStatus.INFEASIBLE):
            parts.append(f"{c[TrialStatus.INFEASIBLE]} infeasible (not trained)")
        return (f"[{hms(self.clock() - self.t0)}] trials {done}/{self.budget} done ({', '.join(parts)}), "
                f"{len(self.running)} running | front: {self._front()} | ETA {self.eta(done)}")

    def _table(self) -> Group:
        table = Table.grid(padding=(0, 2))
        now = self.clock()
        # a copy: rich renders from its own thread while Tune's callbacks add and remove trials
        for r in sorted(list(self.running.values()), key=lambda r: str(r.number)):
            speed = f"{r.images_per_s:,.0f} img/s" if r.images_per_s else "starting"
            acc = f"val {r.val_acc:.4f}" if r.val_acc is not None else ""
            table.add_row(f"trial {r.number}", f"epoch {r.epoch}/{self.epochs}", speed, acc, hms(now - r.started),
                          Text(r.placements, overflow="ellipsis", no_wrap=True))
        return Group(Text(self.status_line(), style="bold"), table)

    def __rich__(self) -> Group:  # rich's Live re-renders this every refresh, so the timers move
        return self._table()

    def _say(self, line: str) -> None:
        if self.mode == "quiet":
            return
        (self.live.console if self.live else self.console).print(Text(line))

    # -- Tune's callback hooks --------------------------------------------------------------------
    def setup(self, **info) -> None:
        if self.mode == "live":
            self.live = Live(self, console=self.console, refresh_per_second=2, transient=True)
            self.live.start()

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        arch = trial.config.get("arch")
        self.running[trial.trial_id] = RunningTrial(trial.config.get("trial_number", "?"),
                                                    Arch.from_json(arch).short() if arch else "?", self.clock())

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        r, report = self.running.get(trial.trial_id), TrialReport.from_result(result)
        if r is None or report.epoch is None or report.epoch.epoch <= r.epoch:
            return
        now, new = self.clock(), report.epoch.epoch - r.epoch
        self.epochs_done += new
        self.epoch_seconds += [(now - (r.last_epoch_at or r.started)) / new] * new
        r.epoch, r.images_per_s, r.val_acc = report.epoch.epoch, report.epoch.train_images_per_s, report.epoch.val_acc
        r.last_epoch_at = now
        self.estimate(self._done())
        if self.mode == "lines" and self.clock() - self.last_line > LINE_EVERY:
            self._status()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finished(trial, error=True)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self.running.pop(trial.trial_id, None)
        self._say(f"trial {trial.config.get('trial_number', '?')}: its worker was lost; Ray Tune runs it again")

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self.mode == "lines" and self.clock() - self.last_line > LINE_EVERY:
            self._status()

    def on_experiment_end(self, trials: list, **info) -> None:
        self.close()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _status(self) -> None:
        self.last_line = self.clock()
        self._say(self.status_line())

    def _finished(self, trial, error: bool = False) -> None:
        r = self.running.pop(trial.trial_id, None)
        self.finished_since_estimate = True
        report = TrialReport.from_result(trial.last_result)
        if report.failed or error:
            what = f"failed: {report.reason or 'its Ray worker was lost'}"
        elif report.completed and report.epoch is not None:
            flops = f"{report.flops / 1e6:.2f}" if report.flops is not None else "-"  # every report carries it
            what = f"val {report.epoch.val_acc:.4f}, {flops} MFLOPs"
        elif report.epoch is not None:
            what = f"stopped early at epoch {report.epoch.epoch} (val {report.epoch.val_acc:.4f})"
        else:
            what = "stopped before its first epoch"
        took = f" in {hms(self.clock() - r.started)}" if r else ""
        self._say(f"trial {trial.config.get('trial_number', '?')}: {what}{took} | {r.placements if r else ''}")
        if self.mode == "lines":
            self._status()

