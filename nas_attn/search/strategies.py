"""The phases of a search whose archs are evaluated by a cheaper strategy (:mod:`nas_attn.strategy`).

- ``inherit``: Ray Tune runs the space's trials, the vanilla backbone first (from scratch) and every other arch
  fine-tuned from its weights (:class:`~nas_attn.searcher.StudySearcher` with ``inherit_epochs``).
- ``oneshot``: the supernet is trained as one Ray Tune trial that checkpoints its whole training state every
  epoch (the study records the last one, so a killed search goes on from it); then the sampler proposes the
  space's trials, scored in batches by Ray tasks spread over the workers, each told to the study as it returns.
- both: the ``retrain_top_k`` archs of the predicted front are enqueued (``retrain_of``) and trained from
  scratch as ordinary trials.

Every phase finds what is done in the study alone, so a resume after kill -9 redoes no finished work: a
completed prediction or retraining is kept, the supernet goes on from its last epoch, and trials left running
are recorded as interrupted and run again. Imports Ray: the driver imports this only once the input is checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune

from nas_attn.errors import NasAttnError
from nas_attn.plan import SearchPlan
from nas_attn.records import SupernetConfig, TrialAttrs, TrialReport, TrialStatus
from nas_attn.results import interrupted_trials, trial_status
from nas_attn.searcher import StudySearcher
from nas_attn.stopping import StopRequest
from nas_attn.strategy import is_prediction, pick_for_retraining
from nas_attn.study import record_interrupted
from nas_attn.trial import TrialContext, run_supernet, score_with_supernet

#: study user attribute: the supernet's last checkpoint (``{"epoch", "epochs", "checkpoint"}``)
SUPERNET_KEY = "supernet"

Say = Callable[[str], None]


def run_strategy(plan: SearchPlan, study: optuna.Study, encoding, context: TrialContext, attempt: int,
                 stop: StopRequest, say: Say) -> None:
    """The phases of ``plan.space.strategy`` still to run: predictions, then the retraining of their front."""
    strategy = plan.space.strategy
    if strategy.name == "inherit":
        remaining = _remaining(study, plan.space.trials, _predicting)
        _report_resume(plan, study, "prediction", remaining, say)
        _tune_phase(plan, study, encoding, context, attempt, stop, remaining, "inherit",
                    inherit_epochs=strategy.inherit_epochs)
    else:
        checkpoint = train_supernet_phase(plan, study, context, attempt, stop, say)
        score_phase(plan, study, encoding, context, checkpoint, stop, say)
    picks = enqueue_retraining(plan, study)
    remaining = _remaining(study, len(picks), _retraining)
    if remaining:
        say(f"{strategy.name}: retraining {remaining} arch(s) of the predicted front from scratch "
            f"(trial(s) {', '.join(map(str, picks))} predicted them)")
    _tune_phase(plan, study, encoding, context, attempt, stop, remaining, "retrain")


def _predicting(attrs: TrialAttrs) -> bool:
    """A trial of the prediction phase (the vanilla trial of ``inherit`` included)."""
    return attrs.retrain_of is None


def _retraining(attrs: TrialAttrs) -> bool:
    return attrs.retrain_of is not None


def count_finished_where(study: optuna.Study, keep: Callable[[TrialAttrs], bool]) -> int:
    """Finished trials (complete, pruned, failed: they count against a budget) whose attributes ``keep``."""
    interrupted = interrupted_trials(study)
    return sum(1 for t in study.get_trials(deepcopy=False)
               if trial_status(t, interrupted).finished and keep(TrialAttrs.of(t, history=False)))


def _remaining(study: optuna.Study, budget: int, keep: Callable[[TrialAttrs], bool]) -> int:
    return max(0, budget - count_finished_where(study, keep))


def _report_resume(plan: SearchPlan, study: optuna.Study, what: str, remaining: int, say: Say) -> None:
    if plan.run.resuming:
        say(f"resume: {plan.space.trials - remaining} {what}(s) already finished, {remaining} to go")


def _tune_phase(plan: SearchPlan, study: optuna.Study, encoding, context: TrialContext, attempt: int,
                stop: StopRequest, remaining: int, name: str, inherit_epochs: int | None = None) -> None:
    from nas_attn.search.tuning import run_trials

    finished = count_finished_where(study, lambda a: True)
    searcher = run_trials(plan, study, encoding, context, remaining, finished, attempt, stop,
                          inherit_epochs=inherit_epochs, total=finished + remaining, name=name)
    settle(plan, study, searcher, stop)


def settle(plan: SearchPlan, study: optuna.Study, searcher: StudySearcher | None, stop: StopRequest) -> None:
    """After Ray Tune returned: a write failure or a stop request ends the search (trials left running recorded
    as interrupted), and so does a searcher that could not go on (constraints too tight, no vanilla weights)."""
    from nas_attn.results import count_finished

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
    """Records the supernet's last checkpoint in the study (where a resume goes on from), and its failure."""

    def __init__(self, study: optuna.Study, plan: SearchPlan, epochs: int, say: Say) -> None:
        self.study, self.plan, self.epochs, self.say = study, plan, epochs, say
        self.epoch: int | None = None
        self.failure: TrialReport | None = None

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        report = TrialReport.from_result(result)
        if report.failed:
            self.failure = report
            return
        self.epoch = int(result["epoch"])
        self.say(f"supernet: epoch {self.epoch}/{self.epochs}, training loss {result['train_loss']:.4f} "
                 f"({result['epoch_s']:.1f} s)")

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        from nas_attn.checkpoints import checkpoint_uri

        uri = checkpoint_uri(checkpoint, self.plan.run.path, self.plan.storage_scheme)
        self.study.set_user_attr(SUPERNET_KEY, {"epoch": self.epoch, "epochs": self.epochs, "checkpoint": uri})


def train_supernet_phase(plan: SearchPlan, study: optuna.Study, context: TrialContext, attempt: int,
                         stop: StopRequest, say: Say) -> str:
    """The trained supernet's checkpoint: trained now as one Ray Tune trial (or from its last epoch after a
    kill), or found in the study."""
    epochs = plan.space.strategy.supernet_epochs
    saved = study.user_attrs.get(SUPERNET_KEY) or {}
    if saved.get("epoch") == epochs and saved.get("epochs") == epochs:
        return saved["checkpoint"]
    resume = saved.get("checkpoint") if saved.get("epochs") == epochs else None
    say(f"oneshot: training the supernet for {epochs} epoch(s)" +
        (f", from its epoch {saved['epoch']}" if resume else ""))
    recorder = SupernetRecorder(study, plan, epochs, say)
    res = plan.resources
    trainable = tune.with_resources(tune.with_parameters(run_supernet, context=context, space=plan.space),
                                    {"cpu": res.cpus_per_trial, "gpu": 1 if res.gpus_per_trial > 0 else 0})
    tuner = tune.Tuner(
        trainable, param_space=SupernetConfig(plan.space.recipe.seed, epochs, resume).to_config(),
        tune_config=tune.TuneConfig(num_samples=1, trial_dirname_creator=lambda t: "supernet"),
        run_config=tune.RunConfig(name=f"attempt-{attempt}-supernet", storage_path=plan.tune_root, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2), stop=stop,
                                  callbacks=[recorder]))
    results = tuner.fit()
    if stop.failure is not None:
        raise stop.failure
    stop.check("the supernet's training was stopped; a resume goes on from its last epoch")
    if recorder.failure is not None:
        kept = _keep_text(plan, "supernet", recorder.failure.traceback)
        raise NasAttnError(f"oneshot: the supernet's training failed: {recorder.failure.reason} (traceback: {kept})")
    if results.errors:
        raise NasAttnError(f"oneshot: the supernet's Ray worker failed: {str(results.errors[0]).splitlines()[0]}")
    saved = study.user_attrs.get(SUPERNET_KEY) or {}
    if saved.get("epoch") != epochs:
        raise NasAttnError(f"oneshot: the supernet's training ended without its epoch-{epochs} checkpoint")
    return saved["checkpoint"]


def _keep_text(plan: SearchPlan, name: str, text: str) -> str:
    path = plan.run.path / "tracebacks" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text or "(no traceback)")
    return str(path.relative_to(plan.run.path))


# -- oneshot: scoring -------------------------------------------------------------------------------------------

def score_phase(plan: SearchPlan, study: optuna.Study, encoding, context: TrialContext, checkpoint: str,
                stop: StopRequest, say: Say) -> None:
    """The space's trials proposed by the sampler and scored by the supernet, ``score_batch`` archs per Ray task,
    one task per trial slot at once; each score told to the study as it returns (a prediction: ``oneshot``)."""
    from nas_attn.complexity import complexity

    space, res, strategy = plan.space, plan.resources, plan.space.strategy
    todo = _remaining(study, space.trials, _predicting)
    _report_resume(plan, study, "scored arch", todo, say)
    if not todo:
        return
    say(f"oneshot: scoring {todo} arch(s) on the supernet, {strategy.score_batch} per task, {res.concurrency} "
        f"task(s) at once")
    searcher = StudySearcher(study, encoding, cost=complexity if space.counts_before_training else None,
                             run=plan.run, seed_base=space.recipe.seed, epochs=0, evaluation="oneshot")
    task = ray.remote(num_cpus=res.cpus_per_trial, num_gpus=res.gpus_per_trial)(score_with_supernet)
    shared_context, shared_space = ray.put(context), ray.put(space)
    in_flight: dict[Any, list[str]] = {}
    asked = 0
    t0 = time.time()
    try:
        while asked < todo or in_flight:
            while asked < todo and len(in_flight) < res.concurrency:
                ids = _ask(searcher, min(strategy.score_batch, todo - asked), asked)
                if not ids:
                    break
                asked += len(ids)
                archs = [searcher.live[i].trial.user_attrs["arch"] for i in ids]
                in_flight[task.remote(archs, checkpoint, shared_context, shared_space, strategy.bn_images)] = ids
            if searcher.too_tight and not in_flight:
                raise NasAttnError(f"{space.path.name}: {searcher.too_tight}")
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                _tell_scores(searcher, in_flight.pop(ref), _get(ref))
            if ready:
                done = count_finished_where(study, _predicting)
                say(f"oneshot: {done}/{space.trials} scored ({time.time() - t0:.0f} s)")
            if stop.requested or stop.failure is not None:
                break
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        left = [searcher.live[i].trial.number for ids in in_flight.values() for i in ids]
        if left:
            record_interrupted(study, left)
    if stop.failure is not None:
        raise stop.failure
    stop.check("the supernet's scoring was stopped; every score told is kept")
    if searcher.too_tight:
        raise NasAttnError(f"{space.path.name}: {searcher.too_tight}")


def _ask(searcher: StudySearcher, n: int, offset: int) -> list[str]:
    """Up to ``n`` feasible archs from the sampler (archs over a constraint are told at once, never scored)."""
    ids = []
    for i in range(n):
        trial_id = f"score-{offset + i}"
        config = searcher.suggest(trial_id)
        if not isinstance(config, dict):
            break
        ids.append(trial_id)
    return ids


def _get(ref) -> list[dict] | BaseException:
    try:
        return ray.get(ref)
    except Exception as exc:  # the task's worker was lost: each of its archs is recorded as failed
        return exc


def _tell_scores(searcher: StudySearcher, ids: list[str], scores: list[dict] | BaseException) -> None:
    if isinstance(scores, BaseException):
        first = (str(scores).strip().splitlines() or [type(scores).__name__])[0]
        scores = [{"failed": True, "reason": f"the scoring task's Ray worker failed: {first}"[:500],
                   "traceback": str(scores)}] * len(ids)
    for trial_id, score in zip(ids, scores, strict=True):
        live = searcher.live.pop(trial_id)
        where = {k: score[k] for k in ("node", "node_id", "device") if score.get(k)}
        attrs: dict[str, Any] = {"evaluation": "oneshot", "wall_s": round(time.time() - live.started, 3), **where}
        if score.get("failed"):
            attrs.update(status=TrialStatus.FAILED.value, reason=score["reason"],
                         traceback=searcher._keep_traceback(live.trial.number, score.get("traceback", "")))
            TrialAttrs.set_on(live.trial, **attrs)
            searcher.study.tell(live.trial, state=TrialState.FAIL)
            continue
        cost = {"params": score["params"], "flops": score["flops"]}
        attrs.update(status=TrialStatus.COMPLETE.value, val_acc_final=score["val_acc"], val_acc_best=score["val_acc"],
                     val_top5_final=score["val_top5"], epochs_run=0, train_s=score["score_s"], **cost)
        TrialAttrs.set_on(live.trial, **attrs)
        measured = {"val_acc": score["val_acc"], **cost}
        searcher.study.tell(live.trial, [float(measured[o]) for o in searcher.encoding.space.objectives])


# -- both: the predicted front, retrained -----------------------------------------------------------------------

def enqueue_retraining(plan: SearchPlan, study: optuna.Study) -> list[int]:
    """The predictions whose archs are retrained from scratch (their trial numbers); those not enqueued yet are
    enqueued now, each carrying ``retrain_of``. The pick depends only on the completed predictions, so a resume
    picks the same archs and enqueues none twice."""
    space = plan.space
    trials = study.get_trials(deepcopy=False)
    trained = {t.user_attrs.get("arch") for t in trials if t.state == TrialState.COMPLETE
               and not is_prediction(t.user_attrs.get("evaluation"))}
    best: dict[str, optuna.trial.FrozenTrial] = {}
    acc = space.objectives.index("val_acc")
    for t in trials:  # one candidate per arch (a sampler may propose an arch twice): its best prediction
        arch = t.user_attrs.get("arch")
        if t.state != TrialState.COMPLETE or not is_prediction(t.user_attrs.get("evaluation")) or arch in trained:
            continue
        if arch not in best or t.values[acc] > best[arch].values[acc]:
            best[arch] = t
    picks = pick_for_retraining([(t.number, t.values) for t in best.values()], space.directions,
                                space.strategy.retrain_top_k)
    enqueued = {t.user_attrs.get("retrain_of") for t in trials}
    by_number = {t.number: t for t in trials}
    for n in picks:
        if n not in enqueued:
            study.enqueue_trial(by_number[n].params, user_attrs={"evaluation": "scratch", "retrain_of": n})
    return picks

