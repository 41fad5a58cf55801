"""The search driver: :func:`run_search`, and the life cycle of an attempt (started, finished, interrupted by a
signal, stopped by a full disk or an error), each recorded in the run folder's manifest."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from nas_attn.arch import Arch
from nas_attn.checks import check_before_data
from nas_attn.errors import NasAttnError
from nas_attn.fsutil import is_disk_full
from nas_attn.manifest import end_attempt, start_attempt
from nas_attn.plan import (
    SearchOptions,
    SearchPlan,
    check_local_resources,
    check_options_against_space,
    machine_resources,
    make_plan,
)
from nas_attn.results import count_finished, export, status_counts
from nas_attn.runfolder import RunFolder, resolve_run_folder
from nas_attn.search.folder import check_run_files, claimed, prepare_run_folder
from nas_attn.search.inputs import data_handle, dataset_info, load_search_data
from nas_attn.search.process import ProcessSettings, process_settings, ray_session
from nas_attn.space import SearchSpace, load_space
from nas_attn.space.encoding import make_encoding
from nas_attn.storage import JournalWriteError, absolute_sqlite, hide_password, open_journal
from nas_attn.study import open_study, prepare_resume
from nas_attn.trial import TrialContext

if TYPE_CHECKING:
    import pandas as pd

    from nas_attn.data import DataHandle
    from nas_attn.records import Manifest
    from nas_attn.stopping import StopRequest


@dataclass(frozen=True)
class SearchResult:
    """What a finished search leaves: its run folder, and its tables (as in ``trials.parquet``, ``front.csv``)."""

    run_dir: Path
    trials: pd.DataFrame
    front: pd.DataFrame

    def counts(self) -> dict[str, int]:
        return status_counts(self.trials)


def run_search(space: str | Path, **flags: Any) -> SearchResult:
    """Run a search of ``space`` (a name in ``search_spaces/`` or a path); ``flags`` are
    :class:`~nas_attn.plan.SearchOptions` (the command line's flags, ``trials=8``, ``results_dir=…``).

    What the search sets in this process (environment defaults, Optuna's verbosity, Ray's loggers) is undone
    when it returns or raises.

    Raises:
        NasAttnError: bad input (a flag, the space file, the dataset, the run folder), before anything runs;
            also when another search holds the run folder.
        SearchInterrupted: SIGINT or SIGTERM stopped the search (a ``KeyboardInterrupt``; its message says
            how to resume).
    """
    options = SearchOptions.from_flags(space=str(space), **flags)
    say = _sayer(options.quiet)
    space_ = load_space(options.space, dataset=options.dataset)
    if options.arch is not None:  # nas-attn train: one arch, one trial per seed
        space_ = space_.for_arch(Arch.from_json(options.arch), options.trials or 1, options.input_size,
                                 options.recipe_changes())
    check_options_against_space(options, space_)
    check_local_resources(options, space_, *machine_resources())
    run = resolve_run_folder(options.results_dir, space_.name, options.run_id, options.resume)
    if options.arch is not None and options.trials is None and run.resuming:
        space_ = replace(space_, trials=_seeds_recorded(run))  # a resume trains the seeds it started
    # the run folder is locked before anything else: a second search on it stops here, before data or Ray
    with claimed(run), process_settings() as settings:
        check_run_files(run, space_, options)
        check_before_data(options, space_, run)  # nas_attn.checks: paths, cluster, dataset, resume, constraints
        for warning in space_.warnings:
            say(f"warning: {space_.path.name}: {warning}")
        return _run_claimed(options, space_, run, settings, say)


def _run_claimed(options: SearchOptions, space: SearchSpace, run: RunFolder, settings: ProcessSettings,
                 say: Callable[[str], None]) -> SearchResult:
    from nas_attn.stopping import StopRequest  # imports Ray

    with StopRequest() as stop:
        dataset = load_search_data(options, space, say)
        with ray_session(options.address):
            import ray

            stop.install()  # after ray.init, which installs its own SIGTERM handler
            plan = make_plan(options, space, run, dataset_info(dataset), ray.cluster_resources(),
                             cpu_budget=_budget_recorded(run))
            return run_attempt(plan, data_handle(dataset, plan.space, options), say, stop, settings)


def _budget_recorded(run: RunFolder) -> bool | None:
    """Whether a resumed run started with the space's CPU budget (``None``: a new run, or not recorded)."""
    applied = (run.read_manifest().budget or {}).get("cpu_budget_applied") if run.resuming else None
    return applied if isinstance(applied, bool) else None


def _seeds_recorded(run: RunFolder) -> int:
    """The seeds a ``nas-attn train`` run was started with (1 where its manifest does not say)."""
    trials = (run.read_manifest().budget or {}).get("trials")
    return trials if isinstance(trials, int) and trials > 0 else 1


def _sayer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


def run_attempt(plan: SearchPlan, data: DataHandle, say: Callable[[str], None], stop: StopRequest,
                settings: ProcessSettings) -> SearchResult:
    """One attempt of ``plan`` in its run folder (claimed by the caller): recorded in the manifest, then the
    trials still to run, the front measured, the tables written; an error closes the attempt as failed."""
    space, res = plan.space, plan.resources
    train, val, test = data.sizes
    say(f"split: {train} train / {val} validation images (seed {space.recipe.seed}); "
        f"test set ({test}{', a stratified subset' if space.test_subset else ''}) kept for the final front")
    if plan.budget_note:
        say(plan.budget_note)
    say(space.summary() + f"; {res.concurrency} at once, {res.cpus_per_trial:g} CPU + {res.gpus_per_trial:g} GPU each")
    prepare_run_folder(plan, settings, say)
    stop.immediate = False  # from here on a signal asks for a clean stop
    storage, storage_url = _open_storage(plan)
    manifest = start_attempt(plan, storage_url, data)
    try:
        return _attempt(plan, storage, manifest, data, say, stop)
    except Exception as exc:
        _close_failed(plan, manifest, exc)
        raise


def _attempt(plan: SearchPlan, storage, manifest: Manifest, data: DataHandle, say: Callable[[str], None],
             stop: StopRequest) -> SearchResult:
    """The attempt just recorded in ``manifest``: the study, the trials, the front, the tables."""
    from nas_attn.stopping import SearchInterrupted

    space, res = plan.space, plan.resources
    study = open_study(plan, storage, manifest.study_name or space.name)
    context = TrialContext(space.recipe, data, space.imports, res.threads, res.gpus_per_trial,
                           measure_latency="latency_ms" in space.objectives, run_dir=str(plan.run.path))
    t0 = time.time()
    try:
        _search_then_measure(plan, study, context, len(manifest.attempts), say, stop)
    except SearchInterrupted as exc:
        trials, _ = export(plan.run.path, study)
        end_attempt(plan, manifest, "interrupted", search_s=round(time.time() - t0, 1), counts=status_counts(trials))
        detail = f"{exc.detail}; " if exc.detail else ""
        raise SearchInterrupted(exc.signum, f"{detail}resume with: {resume_command(plan)}") from None
    except (JournalWriteError, OSError) as exc:
        _stop_on_write_failure(plan, manifest, exc)
    trials, front = export(plan.run.path, study)
    end_attempt(plan, manifest, "finished", search_s=round(time.time() - t0, 1),
                counts=status_counts(trials))
    return SearchResult(plan.run.path, trials, front)


def _close_failed(plan: SearchPlan, manifest: Manifest, exc: Exception) -> None:
    """An error ended the attempt: record it as failed, so that the run folder does not look still running
    (a write failure has closed it already)."""
    if manifest.status != "running":
        return
    reason = str(exc) if isinstance(exc, NasAttnError) else f"{type(exc).__name__}: {exc}"
    try:  # the error that ended the search is the one to report, not a second one here
        end_attempt(plan, manifest, "failed", reason=reason)
    except OSError:
        pass


def _search_then_measure(plan: SearchPlan, study, context, attempt: int, say: Callable[[str], None],
                         stop: StopRequest) -> None:
    """Run the trials still to run, then measure the front; a stop request ends either phase cleanly."""
    from nas_attn.search.measure import measure_front  # both import Ray
    from nas_attn.search.strategies import run_strategy, settle
    from nas_attn.search.tuning import run_trials

    encoding = make_encoding(plan.space)
    prepare_resume(study, encoding, say)
    if plan.space.strategy.predicts:
        run_strategy(plan, study, encoding, context, attempt, stop, say)
    else:
        finished = count_finished(study)
        remaining = max(0, plan.space.trials - finished)
        if plan.run.resuming:
            say(f"resume: {finished} trial(s) already finished, {remaining} to go")
        settle(plan, study, run_trials(plan, study, encoding, context, remaining, finished, attempt, stop), stop)
    measure_front(plan, study, context, say, stop)


def _stop_on_write_failure(plan: SearchPlan, manifest: Manifest, exc: Exception) -> None:
    """The run folder cannot be written (a full disk): one line, and the command that resumes the run."""
    if isinstance(exc, OSError) and not is_disk_full(exc):
        raise exc
    try:  # on a full disk this may fail too; the journal is what a resume needs, and it is intact
        end_attempt(plan, manifest, "failed", reason=str(exc))
    except OSError:
        pass
    what = str(exc) if isinstance(exc, JournalWriteError) else (
        f"cannot write in {plan.run.path} ({exc.strerror or exc}): the search stops, every completed trial is "
        f"kept")
    raise JournalWriteError(f"{what}; free space, then resume with: {resume_command(plan)}") from None


def resume_command(plan: SearchPlan) -> str:
    """The command that resumes this run, as it can be pasted in any shell and any folder: the interpreter
    running now (a bare ``python`` may lack nas-attn), the same flags, every path absolute, the run folder
    named."""
    o = plan.options
    options = replace(
        o, space=str(Path(plan.space.path).resolve()), run_id=plan.run.path.name, resume=False,
        results_dir=str(plan.run.path.parent.parent), data_root=_absolute(o.data_root), arch=_absolute_arch(o.arch),
        cache_dir=_absolute(o.cache_dir), storage=None if o.storage is None else absolute_sqlite(o.storage),
        storage_path=o.storage_path if o.storage_path is None or "://" in o.storage_path else _absolute(o.storage_path))
    return options.command_line(_program(o.arch is not None))


def _program(train: bool) -> str:
    """This interpreter and ``search.py`` when that is what runs, else ``-m nas_attn search`` (or ``train``)."""
    python = shlex.quote(sys.executable)
    if train:
        return f"{python} -m nas_attn train"
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "search.py" and script.is_file():
        return f"{python} {shlex.quote(str(script.resolve()))}"
    return f"{python} -m nas_attn search"


def _absolute_arch(arch: str | None) -> str | None:
    """``--arch`` as a resume may give it: a file's absolute path, or the JSON text itself."""
    return arch if arch is None or arch.lstrip().startswith("{") else _absolute(arch)


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _open_storage(plan: SearchPlan):
    url = plan.options.storage
    if url:
        try:
            return optuna.storages.RDBStorage(url), url
        except Exception as exc:
            shown = hide_password(url)
            first = (str(exc).strip().splitlines() or [""])[0][:300].replace(url, shown)
            raise NasAttnError(f"--storage {shown}: cannot open ({type(exc).__name__}: {first})") from None
    return open_journal(plan.run.journal), str(plan.run.journal)
