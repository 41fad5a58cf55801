"""The phases of a search whose archs are evaluated by a cheaper strategy (:mod:`nas_attn.strategy`).

- ``inherit``: Ray Tune runs the space's trials, the vanilla backbone first (from scratch) and every other arch
  fine-tuned from its weights (:class:`~nas_attn.searcher.StudySearcher` with ``inherit_epochs``).
- ``oneshot``: the supernet is trained as one Ray Tune trial that checkpoints its whole training state every
  epoch (the study records the last one, so a killed search goes on from it); then the sampler proposes
  ``strategy.scored`` archs, scored in batches by Ray tasks spread over the workers, each told to the study as
  it returns.
- both: the ``retrain_top_k`` archs of the predicted front are enqueued (``retrain_of``) and trained from
  scratch as ordinary trials.

Every phase finds what is done in the study alone, so a resume after kill -9 redoes no finished work: a
completed prediction or retraining is kept, the supernet goes on from its last epoch, and trials left running
are recorded as interrupted and run again. Imports Ray: the driver imports this only once the input is checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune

from nas_attn.checkpoints import checkpoint_uri
from nas_attn.complexity import complexity
from nas_attn.errors import NasAttnError
from nas_attn.plan import SearchPlan, local_ray
from nas_attn.records import (
    ArchScore,
    RetrainPicks,
    SupernetCheckpoint,
    SupernetConfig,
    SupernetReport,
    TrialAttrs,
    TrialReport,
)
from nas_attn.results import count_finished
from nas_attn.search.tuning import run_trials
from nas_attn.searcher import StudySearcher
from nas_attn.space import SearchSpace
from nas_attn.stopping import StopRequest
from nas_attn.storage import JournalWriteError
from nas_attn.strategy import is_prediction, pick_for_retraining
from nas_attn.study import record_interrupted
from nas_attn.trial import TrialContext, run_supernet, score_with_supernet

Say = Callable[[str], None]


def run_strategy(plan: SearchPlan, study: optuna.Study, encoding, context: TrialContext, attempt: int,
                 stop: StopRequest, say: Say) -> None:
    """The phases of ``plan.space.strategy`` still to run: predictions, then the retraining of their front."""
    strategy = plan.space.strategy
    if strategy.name == "inherit":
        remaining = _remaining(study, plan.space.trials, _predicting)
        _report_resume(plan, "prediction", plan.space.trials, remaining, say)
        _tune_phase(plan, study, encoding, context, attempt, stop, remaining, "inherit",
                    inherit_epochs=strategy.inherit_epochs)
    else:
        checkpoint = train_supernet_phase(plan, study, context, attempt, stop, say)
        score_phase(plan, study, encoding, context, checkpoint, attempt, stop, say)
    picks = enqueue_retraining(plan.space, study)
    remaining = _remaining(study, len(picks), lambda a: a.retrain_of in picks)
    if remaining:
        say(f"{strategy.name}: retraining {remaining} arch(s) of the predicted front from scratch "
            f"(trial(s) {', '.join(map(str, picks))} predicted them)")
    _tune_phase(plan, study, encoding, context, attempt, stop, remaining, "retrain")


def _predicting(attrs: TrialAttrs) -> bool:
    """A trial of the prediction phase (the vanilla trial of ``inherit`` included)."""
    return attrs.retrain_of is None


def _remaining(study: optuna.Study, budget: int, keep: Callable[[TrialAttrs], bool]) -> int:
    return max(0, budget - count_finished(study, keep))


def _report_resume(plan: SearchPlan, what: str, budget: int, remaining: int, say: Say) -> None:
    if plan.run.resuming:
        say(f"resume: {budget - remaining} {what}(s) already finished, {remaining} to go")


def _tune_phase(plan: SearchPlan, study: optuna.Study, encoding, context: TrialContext, attempt: int,
                stop: StopRequest, remaining: int, name: str, inherit_epochs: int | None = None) -> None:
    finished = count_finished(study)
    searcher = run_trials(plan, study, encoding, context, remaining, finished, attempt, stop,
                          inherit_epochs=inherit_epochs, total=finished + remaining, name=name)
    settle(plan, study, searcher, stop)


def settle(plan: SearchPlan, study: optuna.Study, searcher: StudySearcher | None, stop: StopRequest) -> None:
    """After Ray Tune returned: a write failure or a stop request ends the search (trials left running recorded
    as interrupted), and so does a searcher that could not go on (constraints too tight, no vanilla weights)."""
    if stop.failure is not None:
        raise stop.failure
    if stop.requested:
        numbers = record_interrupted(study, [live.trial.number for live in searcher.live.values()] if searcher else [])
        stop.check(f"{count_finished(study)} finished trial(s) kept; {len(numbers)} interrupted trial(s) will run "
                   f"again")
    if searcher is not None and searcher.too_tight:
        raise NasAttnError(f"{plan.space.path.name}: {searcher.too_tight}")


# -- oneshot: the supernet --------------------------------------------------------------------------------------

class SupernetRecorder(tune.Callback):
    """Records the supernet's last checkpoint in the study (where a resume goes on from), and its failure. Tune
    swallows what a callback raises, so a study that cannot be written stops the search through ``stop``."""

    def __init__(self, study: optuna.Study, plan: SearchPlan, epochs: int, stop: StopRequest, say: Say) -> None:
        self.study, self.plan, self.epochs, self.stop, self.say = study, plan, epochs, stop, say
        self.epoch: int | None = None
        self.failure: TrialReport | None = None

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        failure = TrialReport.from_result(result)
        if failure.failed:
            self.failure = failure
            return
        report = SupernetReport.from_result(result)
        if report is None:  # a result of Tune's own, without an epoch
            return
        self.epoch = report.epoch
        self.say(f"supernet: epoch {report.epoch}/{self.epochs}, training loss {report.train_loss:.4f} "
                 f"({report.epoch_s:.1f} s)")

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        uri = checkpoint_uri(checkpoint, self.plan.run.path, self.plan.storage_scheme)
        try:
            SupernetCheckpoint(self.epoch, self.epochs, uri).save_on(self.study)
        except (OSError, JournalWriteError) as exc:
            self.stop.fail(JournalWriteError(f"cannot record the supernet's checkpoint in {self.plan.run.path} "
                                             f"({exc}): the search stops; a resume goes on from its last epoch"))


def train_supernet_phase(plan: SearchPlan, study: optuna.Study, context: TrialContext, attempt: int,
                         stop: StopRequest, say: Say) -> str:
    """The trained supernet's checkpoint: trained now as one Ray Tune trial (or from its last epoch after a
    kill), or found in the study."""
    epochs = plan.space.strategy.supernet_epochs
    saved = SupernetCheckpoint.of(study)
    if saved is not None and saved.done and saved.epochs == epochs:
        return saved.checkpoint
    resume = saved if saved is not None and saved.epochs == epochs else None
    say(f"oneshot: training the supernet for {epochs} epoch(s)" +
        (f", from its epoch {resume.epoch}" if resume else ""))
    recorder = SupernetRecorder(study, plan, epochs, stop, say)
    config = SupernetConfig(plan.space.recipe.seed, epochs, resume.checkpoint if resume else None)
    results = _supernet_tuner(plan, context, attempt, stop, recorder, config).fit()
    if stop.failure is not None:
        raise stop.failure
    stop.check("the supernet's training was stopped; a resume goes on from its last epoch")
    if recorder.failure is not None:
        kept = _keep_text(plan, "supernet", recorder.failure.traceback)
        raise NasAttnError(f"oneshot: the supernet's training failed: {recorder.failure.reason} (traceback: {kept})")
    if results.errors:
        raise NasAttnError(f"oneshot: the supernet's Ray worker failed: {str(results.errors[0]).splitlines()[0]}")
    saved = SupernetCheckpoint.of(study)
    if saved is None or not saved.done:
        raise NasAttnError(f"oneshot: the supernet's training ended without its epoch-{epochs} checkpoint")
    return saved.checkpoint


def _supernet_tuner(plan: SearchPlan, context: TrialContext, attempt: int, stop: StopRequest,
                    recorder: SupernetRecorder, config: SupernetConfig) -> tune.Tuner:
    """One trial. On a GPU it has a whole one; on a local machine without one, every CPU the trials would share
    (it is the only thing running), elsewhere one trial's. Tune keeps its last two checkpoints (the study's is
    the newest)."""
    res = plan.resources
    gpu = 1 if res.gpus_per_trial > 0 else 0
    # capped at the machine's CPUs: a concurrency above what fits (a flag, a cpu_budget) only queues trials,
    # but a supernet asking for more than there is would wait for ever
    cpu = res.cpus_per_trial if gpu or not local_ray(plan.options) else min(
        res.cpus_per_trial * res.concurrency, max(res.cpus_per_trial, res.cluster_cpus))
    context = replace(context, threads=max(1, int(cpu)), gpus_per_trial=float(gpu))
    trainable = tune.with_resources(tune.with_parameters(run_supernet, context=context, space=plan.space),
                                    {"cpu": cpu, "gpu": gpu})
    return tune.Tuner(
        trainable, param_space=config.to_config(),
        tune_config=tune.TuneConfig(num_samples=1, trial_dirname_creator=lambda t: "supernet"),
        run_config=tune.RunConfig(name=f"attempt-{attempt}-supernet", storage_path=plan.tune_root, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2), stop=stop, callbacks=[recorder],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))


def _keep_text(plan: SearchPlan, name: str, text: str) -> str:
    path = plan.run.path / "tracebacks" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text or "(no traceback)")
    return str(path.relative_to(plan.run.path))


# -- oneshot: scoring -------------------------------------------------------------------------------------------

#: scoring tasks in a row (beyond one per slot: a shared cause fails the tasks in flight together) that could
#: not load the supernet before the search stops
MAX_FAILED_TASKS = 3


def score_phase(plan: SearchPlan, study: optuna.Study, encoding, context: TrialContext, checkpoint: str,
                attempt: int, stop: StopRequest, say: Say) -> None:
    """``strategy.scored`` archs proposed by the sampler and scored by the supernet, ``score_batch`` archs per Ray
    task, one task per trial slot at once; each score told to the study as it returns (a prediction: ``oneshot``)."""
    space, res, strategy = plan.space, plan.resources, plan.space.strategy
    todo = _remaining(study, strategy.scored, _predicting)
    _report_resume(plan, "scored arch", strategy.scored, todo, say)
    if not todo:
        return
    say(f"oneshot: scoring {todo} arch(s) on the supernet, {strategy.score_batch} per task, {res.concurrency} "
        f"task(s) at once")
    searcher = StudySearcher(study, encoding, cost=complexity if space.counts_before_training else None,
                             run=plan.run, seed_base=space.recipe.seed, epochs=0, evaluation="oneshot",
                             on_failure=stop.fail)
    scoring = Scoring(plan, searcher, checkpoint, context, attempt, told=strategy.scored - todo)
    try:
        scoring.run(todo, stop, say)
    finally:  # also on a stop or an error: the archs handed out and not scored run again
        scoring.give_back()
    if stop.failure is not None:
        raise stop.failure
    stop.check("the supernet's scoring was stopped; every score told is kept")
    if searcher.too_tight:
        raise NasAttnError(f"{space.path.name}: {searcher.too_tight}")


class Scoring:
    """The scoring tasks in flight: archs asked of the sampler through the searcher, scored by Ray tasks
    (``score_with_supernet``: the worker keeps its process, torch imported once), told as they return."""

    def __init__(self, plan: SearchPlan, searcher: StudySearcher, checkpoint: str, context: TrialContext,
                 attempt: int, told: int) -> None:
        res = plan.resources
        self.plan, self.searcher, self.checkpoint, self.attempt = plan, searcher, checkpoint, attempt
        self.task = ray.remote(num_cpus=res.cpus_per_trial, num_gpus=res.gpus_per_trial,
                               max_calls=0)(score_with_supernet)
        self.context, self.space = ray.put(context), ray.put(plan.space)
        self.in_flight: dict[Any, list[str]] = {}
        self.asked = 0  #: archs handed out and not given back
        self.issued = 0  #: ids handed out (never reused: an arch given back comes again under a new id)
        self.failed_tasks = 0
        self.told = told  #: scores told, by this attempt and earlier ones

    def run(self, todo: int, stop: StopRequest, say: Say) -> None:
        t0 = time.time()
        while not stop.requested and stop.failure is None:
            self._launch(todo)
            if not self.in_flight:
                return  # all asked and told, or the searcher cannot go on (constraints, a study not written)
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                self._collect(ref)
            if ready:
                say(f"oneshot: {self.told}/{self.plan.space.strategy.scored} scored ({time.time() - t0:.0f} s)")

    def _launch(self, todo: int) -> None:
        batch, slots = self.plan.space.strategy.score_batch, self.plan.resources.concurrency
        while self.asked < todo and len(self.in_flight) < slots and not self.searcher.too_tight:
            ids = []
            for _ in range(min(batch, todo - self.asked)):
                trial_id = f"score-{self.attempt}-{self.issued}"
                if not isinstance(self.searcher.suggest(trial_id), dict):
                    break
                self.issued += 1
                ids.append(trial_id)
            if not ids:
                return
            self.asked += len(ids)
            archs = [self.searcher.live[i].trial.user_attrs["arch"] for i in ids]
            ref = self.task.remote(archs, self.checkpoint, self.context, self.space,
                                   self.plan.space.strategy.bn_images)
            self.in_flight[ref] = ids

    def _collect(self, ref) -> None:
        ids = self.in_flight.pop(ref)
        try:
            scores = ray.get(ref)
        except Exception as exc:  # the worker died (after Ray's retries): an arch may kill it, so its archs fail
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            scores = [ArchScore(failed=True, reason=f"the scoring task's worker died: {first}"[:500],
                                traceback=str(exc))] * len(ids)
        if scores and scores[0].task_failed:
            self._task_failed(ids, scores[0])
            return
        self.failed_tasks = 0
        for trial_id, score in zip(ids, scores, strict=True):
            self.searcher.tell_score(trial_id, score)
        self.told += len(ids)

    def _task_failed(self, ids: list[str], score: ArchScore) -> None:
        """The supernet could not be loaded: not the archs' failure, so they run again (interrupted); a few such
        tasks in a row stop the search."""
        record_interrupted(self.searcher.study, [self.searcher.live.pop(i).trial.number for i in ids])
        self.asked -= len(ids)
        self.failed_tasks += 1
        if self.failed_tasks >= MAX_FAILED_TASKS + self.plan.resources.concurrency - 1:
            kept = _keep_text(self.plan, "scoring", score.traceback)
            raise NasAttnError(f"oneshot: {self.failed_tasks} scoring tasks in a row could not load the supernet "
                               f"({score.reason}; traceback: {kept}); every score told is kept")

    def give_back(self) -> None:
        for ref in self.in_flight:
            ray.cancel(ref, force=True)
        left = [self.searcher.live.pop(i).trial.number for ids in self.in_flight.values() for i in ids]
        self.in_flight.clear()
        if left:
            record_interrupted(self.searcher.study, left)


# -- both: the predicted front, retrained -----------------------------------------------------------------------

def enqueue_retraining(space: SearchSpace, study: optuna.Study) -> list[int]:
    """The predictions whose archs are retrained from scratch (their trial numbers), picked once and kept in the
    study (:class:`~nas_attn.records.RetrainPicks`), so that a resume retrains the same archs whatever finished;
    those without a retraining yet are enqueued, each carrying ``retrain_of``. A resume that added predictions
    (a larger ``--trials``) adds the picks of the new predicted front to the kept ones."""
    trials = study.get_trials(deepcopy=False)
    predicted = [t for t in trials if t.state == TrialState.COMPLETE and is_prediction(t.user_attrs.get("evaluation"))]
    newest = max((t.number for t in predicted), default=-1)
    kept = RetrainPicks.of(study)
    if kept is None or newest > kept.upto:
        before = kept.picks if kept is not None else []
        picked_archs = {t.user_attrs.get("arch") for t in trials if t.number in before}
        new = _pick(space, trials, [t for t in predicted if t.user_attrs.get("arch") not in picked_archs],
                    space.strategy.retrain_top_k)
        kept = RetrainPicks(before + [n for n in new if n not in before], newest)
        kept.save_on(study)
    enqueued = {t.user_attrs.get("retrain_of") for t in trials}
    by_number = {t.number: t for t in trials}
    for n in kept.picks:
        if n not in enqueued:
            study.enqueue_trial(by_number[n].params, user_attrs={"evaluation": "scratch", "retrain_of": n})
    return kept.picks


def _pick(space: SearchSpace, trials: list, predicted: list, k: int) -> list[int]:
    """The predicted front's picks (:func:`~nas_attn.strategy.pick_for_retraining`): one candidate per arch (a
    sampler may propose an arch twice: its best prediction), none already trained from scratch in the prediction
    phase (the vanilla trial of inherit)."""
    trained = {t.user_attrs.get("arch") for t in trials if t.state == TrialState.COMPLETE
               and t.user_attrs.get("evaluation") == "scratch" and t.user_attrs.get("retrain_of") is None}
    acc = space.objectives.index("val_acc")
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for t in predicted:
        arch = t.user_attrs.get("arch")
        if arch not in trained and (arch not in best or t.values[acc] > best[arch].values[acc]):
            best[arch] = t
    return pick_for_retraining([(t.number, t.values) for t in best.values()], space.objectives, k)
