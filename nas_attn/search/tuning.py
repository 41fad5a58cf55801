"""Ray Tune's part of a search: the Tuner, its scheduler, its callbacks. Imports Ray: the driver imports this
module only once the input is checked."""

from __future__ import annotations

from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler

from nas_attn.complexity import complexity
from nas_attn.plan import SearchPlan
from nas_attn.progress import Progress
from nas_attn.searcher import StudyCallback, StudySearcher
from nas_attn.space import SearchSpace
from nas_attn.stopping import StopRequest
from nas_attn.trial import run_trial


def run_trials(plan: SearchPlan, study, encoding, context, remaining: int, finished: int, attempt: int,
               stop: StopRequest, *, inherit_epochs: int | None = None, total: int | None = None,
               name: str = "") -> StudySearcher | None:
    """Ray Tune runs ``remaining`` trials proposed by the study; returns the searcher (``None``: none to run).

    ``inherit_epochs``: weight inheritance (:class:`StudySearcher`); ``total``: the trials of this phase, for the
    progress line (default: the space's); ``name``: the phase, in Tune's experiment name."""
    if not remaining:
        return None
    space, res = plan.space, plan.resources
    # counted here only where a constraint needs it before training; else each trial counts its own, and the
    # driver never imports torch for it (issue 23: a driver under 800 MB)
    searcher = StudySearcher(study, encoding, cost=complexity if space.counts_before_training else None,
                             run=plan.run, seed_base=space.recipe.seed, epochs=space.recipe.epochs,
                             storage_scheme=plan.storage_scheme, on_failure=stop.fail, inherit_epochs=inherit_epochs)
    progress = Progress(study, total or space.trials, space.recipe.epochs, res.concurrency, finished,
                        mode="quiet" if plan.options.quiet else None)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context),
                                    {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler(space), num_samples=remaining,
                                    max_concurrent_trials=res.concurrency, reuse_actors=True,
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}{name and '-' + name}", storage_path=plan.tune_root, verbose=0,
            failure_config=tune.FailureConfig(max_failures=2), stop=stop,
            # each trial's result.json and progress.csv, as Tune writes by default (its TensorBoard files: not)
            callbacks=[StudyCallback(searcher), progress, CSVLoggerCallback(), JsonLoggerCallback()]),
    )
    try:
        tuner.fit()
    finally:
        progress.close()
    return searcher


def scheduler(space: SearchSpace) -> ASHAScheduler | None:
    if space.asha is None:
        return None
    return ASHAScheduler(time_attr="training_iteration", metric="val_acc", mode="max", max_t=space.recipe.epochs,
                         grace_period=space.asha_grace_period, reduction_factor=space.asha.reduction_factor)
