"""Progress lines while a search runs: trials done/running/failed, the front so far, elapsed and ETA."""

from __future__ import annotations

import math
import time

from ray.tune import Callback

from nas_attn.records import TrialReport, TrialStatus
from nas_attn.results import interrupted_trials, pareto_mask, trial_status

COMPLETE, PRUNED, FAILED = TrialStatus.COMPLETE, TrialStatus.PRUNED, TrialStatus.FAILED


def _hms(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress(Callback):
    """Prints one line per finished trial and a status line at most every ``every`` seconds."""

    def __init__(self, searcher, budget: int, concurrency: int, quiet: bool = False, every: float = 30.0) -> None:
        self.searcher, self.budget, self.quiet, self.every = searcher, budget, quiet, every
        self.concurrency = max(1, concurrency)
        self.t0 = time.time()
        self.last = 0.0

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        interrupted = interrupted_trials(self.searcher.study)
        for t in self.searcher.study.get_trials(deepcopy=False):
            s = trial_status(t, interrupted)
            counts[s] = counts.get(s, 0) + 1
        return counts

    def _front(self) -> str:
        pts = [(t.user_attrs.get("val_acc_final"), t.user_attrs.get("flops")) for t in
               self.searcher.study.get_trials(deepcopy=False) if trial_status(t) is COMPLETE]
        pts = [p for p in pts if None not in p]
        if not pts:
            return "-"
        mask = pareto_mask(pts, ["maximize", "minimize"])
        best = sorted({p for p, m in zip(pts, mask, strict=True) if m}, key=lambda p: p[1])
        return ", ".join(f"{a:.3f}@{f / 1e6:.1f}M" for a, f in best[:6]) + (" …" if len(best) > 6 else "")

    def status_line(self, running: int) -> str:
        c = self._counts()
        done = sum(c.get(k, 0) for k in (COMPLETE, PRUNED, FAILED))
        elapsed = time.time() - self.t0
        walls = [t.user_attrs["wall_s"] for t in self.searcher.study.get_trials(deepcopy=False)
                 if "wall_s" in t.user_attrs and t.datetime_complete and t.datetime_complete.timestamp() >= self.t0]
        # rounds of `concurrency` trials still to run, at the mean trial time seen so far
        rounds = math.ceil(max(0, self.budget - done) / self.concurrency)
        eta = _hms(sum(walls) / len(walls) * rounds) if walls else "?"
        return (f"[{_hms(elapsed)}] trials {done}/{self.budget} done ({c.get(COMPLETE, 0)} complete, "
                f"{c.get(PRUNED, 0)} pruned, {c.get(FAILED, 0)} failed), {running} running | "
                f"front: {self._front()} | ETA {eta}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._trial_line(trial, trials)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._trial_line(trial, trials)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        if not self.quiet:
            print(f"trial {trial.config.get('trial_number', '?')}: its worker was lost; Ray Tune runs it again",
                  flush=True)

    def _trial_line(self, trial, trials) -> None:
        if self.quiet:
            return
        r = TrialReport.from_result(trial.last_result)
        number = trial.config.get("trial_number", "?")
        if r.failed:
            what = f"failed: {r.reason}"
        elif r.completed and r.epoch is not None:
            what = f"val {r.epoch.val_acc:.4f}, {trial.config.get('flops', 0) / 1e6:.2f} MFLOPs"
        elif trial.status == "ERROR":
            what = "failed: its Ray worker was lost"
        else:
            what = (f"stopped early at epoch {r.epoch.epoch} (val {r.epoch.val_acc:.4f})" if r.epoch
                    else "stopped before its first epoch")
        from nas_attn.arch import Arch

        arch = Arch.from_json(trial.config["arch"]).short() if "arch" in trial.config else "?"
        print(f"trial {number}: {what} | {arch}", flush=True)
        running = sum(t.status == "RUNNING" for t in trials)
        print(self.status_line(running), flush=True)
        self.last = time.time()

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.quiet or time.time() - self.last < self.every:
            return
        self.last = time.time()
        print(self.status_line(sum(t.status == "RUNNING" for t in trials)), flush=True)
