"""After the search: the test set touched once, for the final front; optionally the front retrained with
more seeds (``--reevaluate-front K``). Both run as Ray tasks with a trial's resources and are kept in
``front_eval.json`` (Optuna does not let a finished trial be updated)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optuna
import pandas as pd
import ray

from nas_attn.plan import SearchPlan
from nas_attn.records import FrontEval, TrialAttrs
from nas_attn.results import load_front_eval, save_front_eval
from nas_attn.stopping import StopRequest
from nas_attn.trial import TrialContext, evaluate_checkpoint, retrain


def _front_trials(study: optuna.Study, front: pd.DataFrame) -> list[optuna.trial.FrozenTrial]:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [by_number[int(n)] for n in front["trial"]] if len(front) else []


def _task(fn: Callable, plan: SearchPlan):
    return ray.remote(num_cpus=plan.resources.cpus_per_trial, num_gpus=plan.resources.gpus_per_trial)(fn)


def gather(refs: list, stop: StopRequest) -> None:
    """Wait for ``refs``, giving a stop request a chance every second (the tasks left are cancelled)."""
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        if pending and stop.requested:
            for ref in pending:
                ray.cancel(ref, force=True)
            stop.check("the front's evaluation was stopped; what was measured is kept")


def evaluate_front(study: optuna.Study, front: pd.DataFrame, plan: SearchPlan, context: TrialContext,
                   say: Callable[[str], None], stop: StopRequest) -> None:
    """Test accuracy of each front trial's final weights, measured once per trial."""
    run_dir = plan.run.path
    evals = load_front_eval(run_dir)
    todo = [(t.number, TrialAttrs.of(t, history=False)) for t in _front_trials(study, front)
            if evals.get(t.number, FrontEval()).test_acc is None]
    if not todo:
        return
    missing = [n for n, a in todo if a.checkpoint is None]
    if missing:
        say(f"front: trial(s) {', '.join(map(str, missing))}: no checkpoint recorded; no test accuracy")
    todo = [(n, a) for n, a in todo if a.checkpoint is not None]
    say(f"front: measuring test accuracy of {len(todo)} arch(s) on {context.data.sizes[2]} test images")
    task, shared = _task(evaluate_checkpoint, plan), ray.put(context)  # a handle: each task opens the cache
    refs = [(n, task.remote(a.arch, a.checkpoint, str(run_dir), shared)) for n, a in todo]
    try:
        gather([ref for _, ref in refs], stop)
    finally:  # also when stopped: what was measured is kept
        for number, ref in refs:
            if not ray.wait([ref], timeout=0)[0]:
                continue
            try:
                evals[number] = evals.get(number, FrontEval()).updated(**ray.get(ref))
            except Exception as exc:  # e.g. a checkpoint on a worker's local disk: say so, keep the rest
                if not stop.requested:
                    say(f"front: trial {number}: no test accuracy ({str(exc).strip().splitlines()[-1][:200]})")
        save_front_eval(run_dir, evals)


def reevaluate_front(study: optuna.Study, front: pd.DataFrame, plan: SearchPlan, context: TrialContext,
                     say: Callable[[str], None], stop: StopRequest) -> None:
    """Retrain each front arch with ``--reevaluate-front`` new seeds; keep mean ± std of val and test accuracy."""
    k, run_dir = plan.options.reevaluate_front, plan.run.path
    evals = load_front_eval(run_dir)
    todo = [t for t in _front_trials(study, front) if _reeval_seeds(evals.get(t.number)) != k]
    if not todo or not k:
        return
    say(f"front: re-evaluating {len(todo)} arch(s) with {k} seeds each")
    task, shared = _task(retrain, plan), ray.put(context)
    jobs = [(t.number, [task.remote(TrialAttrs.of(t, history=False).arch, shared, reeval_seed(t.number, i))
                        for i in range(k)])
            for t in todo]
    for number, refs in jobs:
        gather(refs, stop)
        vals = np.array(ray.get(refs))
        spread = vals.std(0, ddof=1) if k > 1 else np.zeros(2)
        evals[number] = evals.get(number, FrontEval()).updated(reeval={
            "seeds": k, "val_mean": float(vals[:, 0].mean()), "val_std": float(spread[0]),
            "test_mean": float(vals[:, 1].mean()), "test_std": float(spread[1])})
    save_front_eval(run_dir, evals)


def _reeval_seeds(measured: FrontEval | None) -> int | None:
    """How many seeds the trial was re-evaluated with (``None``: never)."""
    return measured.reeval.seeds if measured is not None and measured.reeval is not None else None


def reeval_seed(trial_number: int, i: int) -> int:
    """Seeds of re-evaluations: apart from every search trial's seed (seed base + trial number)."""
    return 10_000 + 97 * trial_number + i
