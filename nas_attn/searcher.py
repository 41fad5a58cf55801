"""The Ray Tune searcher of a search: an Optuna study, asked for archs and told their outcome.

:class:`StudySearcher` is a :class:`ray.tune.search.Searcher` that owns its :class:`optuna.Study` and
uses only public APIs of both (Optuna's ask/tell, Tune's searcher and callback hooks):

- Archs over a constraint are told at once as complete with their violation (so that the sampler's
  ``constraints_func`` learns from them), recorded as infeasible, and never trained; another arch is
  asked for instead. An arch's params and FLOPs are counted here only when the space has a constraint
  (``SearchSpace.counts_before_training``); otherwise its trial counts them and reports them with every
  epoch, and the driver does not import torch to count.
- Trials stopped early by ASHA are told PRUNED, never COMPLETE with their low-fidelity accuracy, so they
  never enter the front; trials that failed are told FAIL with their reason (and their traceback kept in
  the run folder).
- Everything a trial leaves (arch, cost, per-epoch history, timings, node, device, checkpoint) is stored
  as user attributes (:class:`~nas_attn.records.TrialAttrs`, written here only) *before* its state is told,
  so that the study alone rebuilds every table after a kill.

:class:`StudyCallback` forwards what Tune tells callbacks (a trial's checkpoint, a restart after a lost
worker, a worker's error) to the searcher.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from nas_attn.arch import Arch
from nas_attn.checkpoints import checkpoint_uri
from nas_attn.records import ArchScore, EpochStats, TrialAttrs, TrialConfig, TrialReport, TrialStatus
from nas_attn.results import interrupted_trials
from nas_attn.runfolder import RunFolder
from nas_attn.space.encoding import Encoding
from nas_attn.storage import JournalWriteError
from nas_attn.study import record_interrupted

#: consecutive refused archs after which the constraints are declared too tight for the space
MAX_CONSECUTIVE_INFEASIBLE = 200


@dataclass
class LiveTrial:
    """A trial handed to Tune and not told yet."""

    trial: optuna.Trial
    cost: dict[str, int] | None  #: ``None`` until the trial reports it (the driver did not count it)
    started: float
    history: list[EpochStats] = field(default_factory=list)
    restarts: int = 0


class StudySearcher(Searcher):
    """Proposes archs from ``encoding`` through ``study`` and tells the study what became of them.

    Args:
        study: the run's study (its sampler already set).
        encoding: how the space's choices are Optuna parameters.
        cost: ``arch -> {"params", "flops"}``; computed once per distinct arch here, and handed to the trial.
            ``None``: the trials count and report it (a space whose constraints do not limit it).
        run: the run folder (tracebacks of failed trials go there).
        seed_base: a trial's seed is ``seed_base + its number``.
        epochs: the recipe's epochs (a trial that reports fewer was stopped early).
        storage_scheme: URI scheme of checkpoints (``None``: local paths).
        on_failure: called with what keeps the study or the run folder from being written (a full disk);
            Tune swallows exceptions raised in searcher hooks, so the driver is told and stops the search.
        inherit_epochs: weight inheritance (``--strategy inherit``): the vanilla backbone is trained first, from
            scratch, and no other trial is handed out before it completes; every other arch then starts from its
            checkpoint and is fine-tuned for this many epochs (its accuracy a prediction, ``evaluation``
            ``inherit``).
        evaluation: the ``evaluation`` attribute of the trials it hands out (``oneshot``: the supernet scores them).
    """

    def __init__(self, study: optuna.Study, encoding: Encoding, *, cost: Callable[[Arch], dict[str, int]] | None,
                 run: RunFolder, seed_base: int, epochs: int, storage_scheme: str | None = None,
                 on_failure: Callable[[Exception], None] | None = None, inherit_epochs: int | None = None,
                 evaluation: str = "scratch") -> None:
        super().__init__(metric="val_acc", mode="max")
        self.study, self.encoding, self.run = study, encoding, run
        self._on_failure = on_failure
        self.seed_base, self.epochs, self.storage_scheme = seed_base, epochs, storage_scheme
        self._cost_of = cost
        self._costs: dict[str, dict[str, int]] = {}
        self.live: dict[str, LiveTrial] = {}
        self.too_tight: str | None = None
        self.inherit_epochs, self.evaluation = inherit_epochs, evaluation
        self._vanilla_checkpoint: str | None = None
        self._vanilla_retried = False

    # -- proposing ------------------------------------------------------------------------------
    def cost(self, arch: Arch) -> dict[str, int]:
        key = arch.to_json()
        if key not in self._costs:
            self._costs[key] = self._cost_of(arch)
        return self._costs[key]

    def suggest(self, trial_id: str) -> dict | None:
        try:
            return self._suggest(trial_id)
        except OSError as exc:  # the journal's own failures are NasAttnError; see _storage_failed
            return self._storage_failed(exc, Searcher.FINISHED)
        except JournalWriteError as exc:
            return self._storage_failed(exc, Searcher.FINISHED)

    def _storage_failed(self, exc: Exception, result=None):
        """The study or the run folder cannot be written: tell the driver, which stops the search."""
        if isinstance(exc, OSError):
            exc = JournalWriteError(f"cannot write in {self.run.path} ({exc.strerror or exc}): the search stops, "
                                    f"every completed trial is kept")
        if self._on_failure is not None:
            self._on_failure(exc)
        return result

    def _suggest(self, trial_id: str) -> dict | None:
        if self.inherit_epochs is not None and self._vanilla_checkpoint is None:
            waiting = self._wait_for_vanilla()
            if waiting is not False:
                return waiting
        reason = None
        for _ in range(MAX_CONSECUTIVE_INFEASIBLE):
            trial, arch = self.encoding.ask(self.study)
            cost = self.cost(arch) if self._cost_of is not None else None
            violation = self.encoding.space.violation(arch, cost)
            TrialAttrs.set_on(trial, arch=arch.to_json(), tune_trial_id=trial_id, **(cost or {}))
            for name, value in violation.values.items():  # what the samplers learn feasibility from
                trial.set_constraint(name, value)
            if violation.reason is None:
                seed = self.seed_base + trial.number
                TrialAttrs.set_on(trial, seed=seed)
                self.live[trial_id] = LiveTrial(trial, cost, time.time())
                return TrialConfig(arch.to_json(), trial.number, seed, **(cost or {}),
                                   **self._evaluation(trial, arch)).to_config()
            reason = violation.reason
            self._tell_infeasible(trial, cost, reason)
        self.too_tight = (f"constraints: {MAX_CONSECUTIVE_INFEASIBLE} consecutive sampled archs broke the constraints "
                          f"(last: {reason}); loosen constraints or narrow the space")
        return Searcher.FINISHED

    # -- weight inheritance: the vanilla trial first ---------------------------------------------
    def _evaluation(self, trial: optuna.Trial, arch: Arch) -> dict[str, Any]:
        """How this trial is evaluated: recorded on it, and what its config carries (inheritance)."""
        retrain = TrialAttrs.of(trial, history=False).retrain_of is not None
        inherits = self.inherit_epochs is not None and self._vanilla_checkpoint is not None and not retrain
        TrialAttrs.set_on(trial, evaluation="inherit" if inherits else "scratch" if retrain else self.evaluation)
        return {"start_from": self._vanilla_checkpoint, "epochs": self.inherit_epochs} if inherits else {}

    def _wait_for_vanilla(self) -> dict | None | bool:
        """Before the vanilla trial's checkpoint exists: ``False`` to ask the study (which hands out the vanilla
        trial, enqueued here if needed), ``None`` to have Tune ask again later (the vanilla trial is training),
        or ``Searcher.FINISHED`` (nothing to inherit from, with the reason in ``too_tight``)."""
        vanilla = [t for t in self.study.get_trials(deepcopy=False) if _is_vanilla_training(t)]
        for t in vanilla:
            if t.state == TrialState.COMPLETE:
                attrs = TrialAttrs.of(t, history=False)
                self._vanilla_checkpoint = attrs.checkpoint
                if attrs.status == TrialStatus.INFEASIBLE.value:  # told, never trained
                    self.too_tight = (f"the vanilla backbone breaks the constraints ({attrs.reason}), and weight "
                                      f"inheritance needs it trained: loosen the constraints or use another strategy")
                    return Searcher.FINISHED
                if self._vanilla_checkpoint is None:  # its checkpoint was never recorded (a failed study write)
                    self.too_tight = (f"the vanilla trial {t.number} recorded no checkpoint: weight inheritance has "
                                      f"nothing to start from; start a new run (another --run-id)")
                    return Searcher.FINISHED
                return False
        active = [t for t in vanilla if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if active:  # training (other slots wait: None), or enqueued (this ask hands it out)
            return None if all(t.state == TrialState.RUNNING for t in active) else False
        interrupted = interrupted_trials(self.study)
        failed = [t for t in vanilla if t.state == TrialState.FAIL and t.number not in interrupted]
        if failed and self._vanilla_retried:
            self.too_tight = (f"the vanilla trial {failed[-1].number} failed "
                              f"({TrialAttrs.of(failed[-1], history=False).reason}): weight inheritance has nothing "
                              f"to start from (a resume trains it once more)")
            return Searcher.FINISHED
        # none yet (a study that another strategy began), or it failed: once more in this attempt
        self._vanilla_retried = bool(failed)
        self.study.enqueue_trial(self.encoding.vanilla_params(), user_attrs={"evaluation": "scratch"})
        return False

    # -- the one-shot strategy: archs scored by the supernet, outside Tune ------------------------------------
    def tell_score(self, trial_id: str, score: ArchScore) -> None:
        """Tell the study a supernet's score of the arch handed out as ``trial_id`` (a prediction: ``oneshot``),
        or its failure (recorded with its traceback). A study that cannot be written stops the search
        (``on_failure``), as in :meth:`on_trial_complete`."""
        live = self.live.pop(trial_id)
        try:
            self._tell_score(live, score)
        except (OSError, JournalWriteError) as exc:
            self._storage_failed(exc)

    def _tell_score(self, live: LiveTrial, score: ArchScore) -> None:
        attrs: dict[str, Any] = {"evaluation": "oneshot", "wall_s": round(time.time() - live.started, 3),
                                 **{k: getattr(score, k) for k in ("node", "node_id", "device") if getattr(score, k)}}
        if score.failed:
            TrialAttrs.set_on(live.trial, status=TrialStatus.FAILED.value, reason=score.reason,
                              traceback=self._keep_traceback(live.trial.number, score.traceback), **attrs)
            self.study.tell(live.trial, state=TrialState.FAIL)
            return
        cost = {"params": score.params, "flops": score.flops}
        TrialAttrs.set_on(live.trial, status=TrialStatus.COMPLETE.value, val_acc_final=score.val_acc,
                          val_acc_best=score.val_acc, val_top5_final=_finite(score.val_top5), epochs_run=0,
                          train_s=score.score_s, **cost, **attrs)
        measured = {"val_acc": score.val_acc, **cost}
        self.study.tell(live.trial, [float(measured[o]) for o in self._objectives])

    def _tell_infeasible(self, trial: optuna.Trial, cost: dict[str, int] | None, reason: str) -> None:
        """Recorded and told, never trained: the worst accuracy, its real cost, and its violation (a latency
        that was never measured is told as infinite: the worst)."""
        TrialAttrs.set_on(trial, status=TrialStatus.INFEASIBLE.value, reason=reason)
        assert cost is not None, "a space with constraints counts every arch before training"
        worst = {"val_acc": 0.0, "latency_ms": float("inf")}
        values = [worst[o] if o in worst else float(cost[o]) for o in self.encoding.space.objectives]
        self.study.tell(trial, values)

    # -- what Tune reports ----------------------------------------------------------------------
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        live = self.live.get(trial_id)
        if live is not None:
            report = TrialReport.from_result(result)
            self._note_cost(live, report)
            self._note_epoch(live, report)

    def _note_cost(self, live: LiveTrial, report: TrialReport) -> None:
        """The cost the trial counted, where the driver did not count it."""
        if live.cost is None and report.params is not None and report.flops is not None:
            live.cost = {"params": report.params, "flops": report.flops}
            TrialAttrs.set_on(live.trial, **live.cost)

    def _note_epoch(self, live: LiveTrial, report: TrialReport) -> None:
        epoch = report.epoch
        if epoch is None or (live.history and live.history[-1] == epoch):
            return
        if not live.history:  # the driver's view of start-up: launched → first step (actor, data, model)
            TrialAttrs.set_on(live.trial, launch_s=round(time.time() - live.started - epoch.epoch_s, 3))
        # a trial retried after a lost node starts again at epoch 1: the lost attempt's epochs go
        live.history[:] = [h for h in live.history if h.epoch < epoch.epoch] + [epoch]

    def record_checkpoint(self, trial_id: str, checkpoint) -> None:
        """Where Tune stored the trial's final checkpoint (a ``ray.tune.Checkpoint``)."""
        if trial_id in self.live:
            uri = checkpoint_uri(checkpoint, self.run.path, self.storage_scheme)
            TrialAttrs.set_on(self.live[trial_id].trial, checkpoint=uri)

    def record_restart(self, trial_id: str) -> None:
        """Tune runs a trial again after its process or node was lost (``FailureConfig``)."""
        if trial_id in self.live:
            live = self.live[trial_id]
            live.restarts += 1
            TrialAttrs.set_on(live.trial, restarts=live.restarts)

    def keep_worker_error(self, trial_number: int, text: str) -> None:
        """The error text of a trial whose worker failed (Tune's ``Trial.get_error()``), kept in the run
        folder. Tune tells callbacks after the searcher, so the trial is told already; its ``traceback``
        attribute names this file."""
        self._keep_traceback(trial_number, text or "(Ray Tune recorded no error text)")

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        try:
            self._complete(trial_id, result, error)
        except (OSError, JournalWriteError) as exc:
            self._storage_failed(exc)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        report = TrialReport.from_result(result)
        if report.disk_full:  # our disk, not the arch: never counted, run again by the resume
            self._disk_full(live, report)
            return
        self._note_cost(live, report)
        self._note_epoch(live, report)
        status, reason, traceback = self._outcome(live, report, error)
        accs = [h.val_acc for h in live.history]
        attrs: dict[str, Any] = {
            "status": status.value, "reason": reason, "history": tuple(live.history),
            "epochs_run": len(live.history), "val_acc_best": max(accs, default=None),
            "val_acc_final": accs[-1] if accs else None,
            "val_top5_final": _finite(live.history[-1].val_top5) if live.history else None,
            "wall_s": round(time.time() - live.started, 3),
            **{k: getattr(report, k) for k in ("node", "node_id", "device", "startup_s", "train_s", "latency_ms")
               if getattr(report, k) not in (None, "")},
        }
        if traceback:
            attrs["traceback"] = self._keep_traceback(live.trial.number, traceback)
        elif error:  # written by StudyCallback.on_trial_error, which Tune calls next
            attrs["traceback"] = str(self.run.traceback_file(live.trial.number).relative_to(self.run.path))
        TrialAttrs.set_on(live.trial, **attrs)
        values = None
        if status is TrialStatus.COMPLETE:
            measured = {"val_acc": report.epoch.val_acc, "latency_ms": report.latency_ms}
            values = [measured[o] if o in measured else float(live.cost[o]) for o in self._objectives]
        state = {TrialStatus.COMPLETE: TrialState.COMPLETE, TrialStatus.PRUNED: TrialState.PRUNED}.get(
            status, TrialState.FAIL)
        self.study.tell(live.trial, values, state=state)

    def _disk_full(self, live: LiveTrial, report: TrialReport) -> None:
        """A trial that could not save its checkpoint for lack of space (Ray Tune's ``--storage-path``): recorded
        as interrupted, so that it does not count against the budget and a resume runs it again, and the search
        stopped, as a full run folder stops it."""
        record_interrupted(self.study, [live.trial.number])
        self._storage_failed(JournalWriteError(
            f"trial {live.trial.number} could not save its checkpoint ({report.reason}): the search stops, every "
            f"completed trial is kept and trial {live.trial.number} runs again"))

    @property
    def _objectives(self) -> tuple[str, ...]:
        return self.encoding.space.objectives

    def _outcome(self, live: LiveTrial, report: TrialReport, error: bool) -> tuple[TrialStatus, str, str]:
        """(status, reason, traceback text) of a finished trial."""
        if error:
            return TrialStatus.FAILED, "the trial's Ray worker failed (process or node lost)", ""
        if report.failed:
            return TrialStatus.FAILED, report.reason or "failed", report.traceback
        if not report.completed or report.epoch is None:
            return (TrialStatus.PRUNED, f"stopped early by ASHA after {len(live.history)} of {self.epochs} epochs",
                    "")
        if live.cost is None:  # an objective cannot be told without it (a trial of an older nas-attn, say)
            return TrialStatus.FAILED, "the trial reported no params or FLOPs", ""
        return TrialStatus.COMPLETE, "", ""

    def _keep_traceback(self, number: int, text: str) -> str:
        path = self.run.traceback_file(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path.relative_to(self.run.path))

    # -- Tune's experiment checkpoints: the study is the state; this only maps Tune ids to trials --
    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({k: v.trial.number for k, v in self.live.items()}))

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed search reopens the study (``--resume``), not Tune's state."""


class StudyCallback(Callback):
    """Forwards Tune's callback events about a trial to the :class:`StudySearcher`."""

    def __init__(self, searcher: StudySearcher) -> None:
        self.searcher = searcher

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        self.searcher.record_checkpoint(trial.trial_id, checkpoint)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self.searcher.record_restart(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        try:
            text = trial.get_error() or ""
        except Exception:  # reading Tune's error file is best effort; the trial is recorded as failed anyway
            text = ""
        if "trial_number" in trial.config:
            self.searcher.keep_worker_error(trial.config["trial_number"], str(text))


def _is_vanilla_training(t: optuna.trial.FrozenTrial) -> bool:
    """The trial that trains the vanilla backbone from scratch for weight inheritance (asked, or enqueued)."""
    attrs = t.user_attrs
    return attrs.get("evaluation") == "scratch" and attrs.get("retrain_of") is None and (
        "arch" not in attrs or not Arch.from_json(attrs["arch"]).placements)


def _finite(value: float) -> float | None:
    """``value``, or ``None`` where it was not measured (NaN), as the other unmeasured attributes are."""
    return None if math.isnan(value) else value
