"""The Optuna study of a run: its storage, sampler and constraints, and what a resume must repair.

Every trial of a run lives in this study (values and user attributes), so the study alone rebuilds every
table: see :mod:`nas_attn.results`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from nas_attn.errors import NasAttnError
from nas_attn.plan import SearchPlan
from nas_attn.results import INTERRUPTED_KEY
from nas_attn.samplers import create_sampler
from nas_attn.space import SearchSpace
from nas_attn.space.encoding import Encoding


def make_sampler(space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    """The space's sampler (:mod:`nas_attn.samplers`: built in, registered, or a factory's import path).

    Constraints reach it through the trials: the searcher sets each proposed arch's violations with
    ``Trial.set_constraint`` (Optuna 5's replacement of samplers' ``constraints_func``), and tells archs over
    a limit as complete with their violation (never trained), so that NSGA-II's constrained domination and
    TPE's feasibility split learn from them.
    """
    return create_sampler(space.sampler, space.sampler_request(seed))


def open_study(plan: SearchPlan, storage: optuna.storages.BaseStorage, name: str,
               sampler_seed_offset: int = 0) -> optuna.Study:
    """Create the run's study ``name`` or load it (a resume); its metrics are named for optuna-dashboard."""
    space = plan.space
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=space.directions,
                                    load_if_exists=True)
    except ValueError as exc:  # e.g. an existing study with other directions
        raise NasAttnError(f"study {name!r} in {plan.run.path}: {exc}") from None
    if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else
                                  optuna.study.StudyDirection.MINIMIZE for d in space.directions]:
        raise NasAttnError(f"study {name!r} in {plan.run.path} has other objectives than "
                           f"{', '.join(space.objectives)}: start a new run")
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2; optuna-dashboard reads the names
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(space.objectives))
    study.sampler = make_sampler(space, space.sampler_seed + len(study.get_trials(deepcopy=False)) +
                                 sampler_seed_offset)
    return study


def prepare_resume(study: optuna.Study, encoding: Encoding, say: Callable[[str], None]) -> None:
    """Repair what a killed search left, and enqueue the vanilla backbone in a new study."""
    running = [t.number for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    if running:
        record_interrupted(study, running)
        say(f"resume: {len(running)} interrupted trial(s) will run again: {', '.join(map(str, running))}")
    if not study.get_trials(deepcopy=False) and encoding.space.vanilla_possible():
        study.enqueue_trial(encoding.vanilla_params(), user_attrs={"evaluation": "scratch"})


def record_interrupted(study: optuna.Study, numbers: list[int]) -> list[int]:
    """Trials that were running when the search stopped (a signal, or a kill found at the next start).

    Each is recorded as interrupted (on the study: a finished trial's attributes can no longer be set), told
    FAIL, and its parameters enqueued, so that it runs again under a new number (as what it was: a retraining
    keeps the prediction it checks, the vanilla trial of weight inheritance stays trained from scratch).
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    todo = [n for n in numbers if trials[n].state == TrialState.RUNNING]
    if not todo:
        return []
    known = study.user_attrs.get(INTERRUPTED_KEY, [])
    study.set_user_attr(INTERRUPTED_KEY, sorted({*known, *todo}))
    for n in todo:
        study.tell(n, state=TrialState.FAIL)
        kept = {k: trials[n].user_attrs[k] for k in ("evaluation", "retrain_of") if k in trials[n].user_attrs}
        study.enqueue_trial(trials[n].params, user_attrs=kept)
    return todo
