"""The search driver: flags and space → a plan → Ray Tune runs the trials Optuna proposes → the run folder.

``python search.py --space NAME_OR_PATH [...]`` (also ``nas-attn search``), or from Python
:func:`run_search`. Everything the flags and the space file can get wrong is checked before torch or Ray
is imported and before anything is written.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_attn.checks import check_before_data
from nas_attn.cli import OneLineArgumentParser, run_cli
from nas_attn.errors import NasAttnError
from nas_attn.plan import (
    DatasetInfo,
    SearchOptions,
    SearchPlan,
    check_local_resources,
    check_options_against_space,
    machine_resources,
    make_plan,
)
from nas_attn.runfolder import RAY_LOG, SPACE_COPY, RunFolder, check_resumable, resolve_run_folder
from nas_attn.space import SAMPLERS, SearchSpace, load_space
from nas_attn.storage import JournalWriteError, RunLock

#: errors of a write that a resume recovers from once the file system has room again
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

if TYPE_CHECKING:
    import pandas as pd

    from nas_attn.data import DataHandle, Dataset, Splits
    from nas_attn.stopping import StopRequest


def build_parser(prog: str = "search.py") -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog=prog, description="Search attention placements: Optuna samplers propose, "
                                                     "Ray Tune trains, the run folder keeps the Pareto front.")
    p.add_argument("--space", required=True, help="a name in search_spaces/ or a path to a .yaml file")
    p.add_argument("--trials", type=int, help="trials to finish (complete, pruned or failed); default: the space's")
    p.add_argument("--epochs", type=int, help="epochs per trial; default: the space's")
    p.add_argument("--dataset", choices=["fashion_mnist", "cifar10", "cifar100", "imagefolder"])
    p.add_argument("--data-root", help="dataset folder (first source tried)")
    p.add_argument("--cache-dir", help="where decoded datasets are kept, memory-mapped by every later run "
                                       "(default: $XDG_CACHE_HOME/nas_attn/decoded)")
    p.add_argument("--strict-data", action="store_true",
                   help="an unreadable image or an empty class folder is an error (default: skipped, with a warning)")
    p.add_argument("--device-data-gb", type=float, metavar="GB",
                   help="device memory a trial may hold its images in; a larger split is streamed from the cache "
                        "(default: half of the trial's share of the free memory; 0 always streams)")
    p.add_argument("--results-dir", help="where run folders go (default: $NAS_ATTN_RESULTS_DIR, or ./results; "
                                         "inside a Ray job ~/nas-attn/results)")
    p.add_argument("--run-id", help="run folder name; an existing one is resumed (default: a timestamp)")
    p.add_argument("--resume", action="store_true", help="continue the latest (or --run-id) run of this space")
    p.add_argument("--sampler", choices=SAMPLERS)
    p.add_argument("--seed", type=int, help="sampler and trial seed base; default: the space's")
    p.add_argument("--address", help="join a Ray cluster: auto or HOST:PORT (default: a local Ray)")
    p.add_argument("--gpus-per-trial", type=float, help="fraction of a GPU per trial (0.25 packs 4 per GPU)")
    p.add_argument("--cpus-per-trial", type=float)
    p.add_argument("--concurrency", type=int, help="trials at once (default: what the resources allow)")
    p.add_argument("--storage", help="Optuna storage URL (e.g. sqlite:///study.db, postgresql://…); "
                                     "default: a journal file in the run folder")
    p.add_argument("--storage-path", help="where Ray Tune keeps trial checkpoints: a path every node can read "
                                          "(NFS) or a URI (s3://…, gs://…); default: RUN_DIR/tune")
    p.add_argument("--reevaluate-front", type=int, default=0, metavar="K",
                   help="retrain each front arch with K more seeds and report mean ± std")
    p.add_argument("--full-budget", action="store_true",
                   help="without a GPU, still run the space's full budget (default: its cpu_budget)")
    p.add_argument("--compile", action="store_true", help="torch.compile each trial's model")
    p.add_argument("--quiet", action="store_true", help="only the final table")
    return p


@dataclass(frozen=True)
class SearchResult:
    """What a finished search leaves: its run folder, and its tables (as in ``trials.parquet``, ``front.csv``)."""

    run_dir: Path
    trials: pd.DataFrame
    front: pd.DataFrame

    def counts(self) -> dict[str, int]:
        return self.trials["status"].value_counts().to_dict() if len(self.trials) else {}


def main(argv: list[str] | None = None, prog: str = "search.py") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    flags = {k: v for k, v in vars(args).items() if k != "debug"}
    return run_cli(lambda: _print_result(run_search(**flags), flags.get("quiet", False)), prog)


def _print_result(result: SearchResult, quiet: bool) -> int:
    from nas_attn.results import format_front

    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items()) or "no trials"
    name = result.run_dir.parent.name
    print(f"\n{name}: {counts}; Pareto front (validation accuracy vs FLOPs):\n{format_front(result.front)}")
    print(f"results: {result.run_dir}")
    return 0


def run_search(space: str | Path, **flags: Any) -> SearchResult:
    """Run a search of ``space`` (a name in ``search_spaces/`` or a path); ``flags`` are
    :class:`~nas_attn.plan.SearchOptions` (the command line's flags, ``trials=8``, ``results_dir=…``).

    Raises:
        NasAttnError: bad input (a flag, the space file, the dataset, the run folder), before anything runs.
        SearchInterrupted: SIGINT or SIGTERM stopped the search (a ``KeyboardInterrupt``; its message says
            how to resume).
    """
    options = SearchOptions.from_flags(space=str(space), **flags)
    _quiet_libraries()
    say = _sayer(options.quiet)
    space_ = load_space(options.space, dataset=options.dataset)
    check_options_against_space(options, space_)
    check_local_resources(options, space_, *machine_resources())
    run = resolve_run_folder(options.results_dir, space_.name, options.run_id, options.resume)
    # a run folder that exists is locked at once: a second search on it stops here, before Ray starts
    lock = RunLock(run.path).acquire() if run.path.is_dir() else RunLock(run.path)
    try:
        _check_run_files(run, space_, options)
        check_before_data(options, space_, run)  # nas_attn.checks: paths, cluster, dataset, resume, constraints
        for warning in space_.warnings:
            say(f"warning: {space_.path.name}: {warning}")
        return _run_locked(options, space_, run, lock, say)
    finally:
        lock.release()


def _check_run_files(run: RunFolder, space: SearchSpace, options: SearchOptions) -> None:
    """A run folder's files, read as the search will read them but writing nothing, before Ray starts: damage
    (or a changed space file) is one line now, not after Ray started or the trials trained."""
    from nas_attn.results import load_front_eval
    from nas_attn.storage import check_journal, check_study_present

    manifest = run.read_manifest()
    check_resumable(run, manifest, space.path, space.sha256)
    if not options.storage:
        check_journal(run.journal)
        if run.resuming:
            check_study_present(run.path, run.journal, manifest)
    load_front_eval(run.path)


def _run_locked(options: SearchOptions, space: SearchSpace, run, lock: RunLock, say) -> SearchResult:
    from nas_attn.stopping import StopRequest

    with StopRequest() as stop:
        dataset = _load_data(options, space, say)
        with ray_session(options.address):
            import ray

            stop.install()  # after ray.init, which installs its own SIGTERM handler
            plan = make_plan(options, space, run, _dataset_info(dataset), ray.cluster_resources())
            return _execute(plan, _handle(dataset, plan.space, options), say, stop, lock)


def _sayer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


def _quiet_libraries() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    # A failed trial's last result has no val_acc; ASHA skips such results, but Tune's strict check would
    # abort the whole search on it.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- data ---------------------------------------------------------------------------------------------------

def _load_data(options: SearchOptions, space: SearchSpace, say: Callable[[str], None]) -> Dataset:
    """The dataset from its decoded cache entry (decoded now if missing or stale), its split checked."""
    from nas_attn.data import load_dataset, stored_side

    r = space.recipe
    side = stored_side(space.base.input_size, r.augment, r.crop_fraction)
    ds = load_dataset(space.dataset.name, options.data_root, side, cache_dir=options.cache_dir,
                      strict=options.strict_data, quiet=options.quiet)
    say(f"data: {ds.describe()}")
    if ds.cache is not None:
        how = f"decoded in {ds.cache.meta.build_s:.1f} s" if ds.cache.built else "reused"
        if ds.cache.built and ds.cache.why != "not built":  # a damaged or stale entry: say what was wrong
            how += f"; the entry there before was rebuilt: {ds.cache.why}"
        say(f"cache: {ds.cache.path} ({how})")
    for warning in ds.warnings:
        say(f"warning: {warning}")
    for label, variant in (("dataset", space), ("cpu_budget", _cpu_variant(space))):
        if variant is not None:
            _check_split(ds, variant, label)
    return ds


def _cpu_variant(space: SearchSpace) -> SearchSpace | None:
    if space.file.cpu_budget is None:
        return None
    from nas_attn.space import RunSettings

    return space.for_run(RunSettings(), cpu_budget=True, num_classes=10, in_chans=space.base.in_chans)


def _check_split(ds: Dataset, space: SearchSpace, label: str) -> None:
    """Refuse a split that leaves a class without training or validation images (before Ray starts)."""
    train, val, _ = _handle(ds, space).sizes
    need = max(2, ds.num_classes)
    for what, n, key in (("training", train, "train_subset"),
                         ("validation", val, "val_subset / dataset.val_fraction")):
        if n < need:
            raise NasAttnError(f"{space.path}: {label}.{key}: the {what} split has {n} images of "
                               f"{ds.name} (need at least {need}, one per class)")


def _handle(ds: Dataset, space: SearchSpace, options: SearchOptions | None = None) -> DataHandle:
    """What the trials of ``space`` open: the cache entry, the split, the device-memory budget."""
    from nas_attn.data import SplitSpec

    split = SplitSpec(space.dataset.val_fraction, space.recipe.seed, space.train_subset, space.val_subset,
                      space.test_subset)
    gb = options.device_data_gb if options is not None else None
    return ds.handle(split, None if gb is None else int(gb * 1e9))


def _dataset_info(ds: Dataset) -> DatasetInfo:
    from nas_attn.heatmaps import class_names

    return DatasetInfo(ds.name, ds.source, ds.num_classes, ds.in_chans, str(ds.cache.path) if ds.cache else "",
                       ds.side, class_names(ds))


# -- Ray ----------------------------------------------------------------------------------------------------

@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """A local Ray, or the cluster at ``address`` (``auto`` or ``HOST:PORT``, refused at once if closed).

    Without ``--address``, Ray's own ``$RAY_ADDRESS`` is honoured (a Ray job's entrypoint has it).
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _probe(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:
            raise NasAttnError(f"--address {address}: cannot join the Ray cluster ({exc})") from None
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Fail within seconds on a closed ``HOST:PORT`` (Ray itself waits minutes for a cluster that is not there)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise NasAttnError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


# -- the search ---------------------------------------------------------------------------------------------

def _execute(plan: SearchPlan, data: DataHandle, say: Callable[[str], None], stop: StopRequest,
             lock: RunLock) -> SearchResult:
    from nas_attn.manifest import start_attempt

    space, res = plan.space, plan.resources
    train, val, test = data.sizes
    say(f"split: {train} train / {val} validation images (seed {space.recipe.seed}); "
        f"test set ({test}{', a stratified subset' if space.test_subset else ''}) kept for the final front")
    if plan.budget_note:
        say(plan.budget_note)
    say(space.summary() + f"; {res.concurrency} at once, {res.cpus_per_trial:g} CPU + {res.gpus_per_trial:g} GPU each")
    _create_run_folder(plan, lock, say)
    stop.immediate = False  # from here on a signal asks for a clean stop
    storage, storage_url = _open_storage(plan)
    manifest = start_attempt(plan, storage_url, data)
    try:
        return _attempt(plan, storage, manifest, data, say, stop)
    except Exception as exc:
        _close_failed(plan, manifest, exc)
        raise


def _attempt(plan: SearchPlan, storage, manifest: dict, data: DataHandle, say: Callable[[str], None],
             stop: StopRequest) -> SearchResult:
    """The attempt just recorded in ``manifest``: the study, the trials, the front, the tables."""
    from nas_attn.manifest import end_attempt
    from nas_attn.results import export
    from nas_attn.stopping import SearchInterrupted
    from nas_attn.study import open_study
    from nas_attn.trial import TrialContext

    space, res = plan.space, plan.resources
    study = open_study(plan, storage)
    context = TrialContext(space.recipe, data, space.imports, res.threads, res.gpus_per_trial,
                           measure_latency="latency_ms" in space.objectives)
    t0 = time.time()
    try:
        _search_then_measure(plan, study, context, len(manifest["attempts"]), say, stop)
    except SearchInterrupted as exc:
        export(plan.run.path, study)
        end_attempt(plan, manifest, "interrupted", search_s=round(time.time() - t0, 1))
        detail = f"{exc.detail}; " if exc.detail else ""
        raise SearchInterrupted(exc.signum, f"{detail}resume with: {_resume_command(plan)}") from None
    except (JournalWriteError, OSError) as exc:
        _stop_on_write_failure(plan, manifest, exc)
    trials, front = export(plan.run.path, study)
    end_attempt(plan, manifest, "finished", search_s=round(time.time() - t0, 1),
                counts=trials["status"].value_counts().to_dict() if len(trials) else {})
    return SearchResult(plan.run.path, trials, front)


def _close_failed(plan: SearchPlan, manifest: dict, exc: Exception) -> None:
    """An error ended the attempt: record it as failed, so that the run folder does not look still running
    (a write failure has closed it already)."""
    from nas_attn.manifest import end_attempt

    if manifest.get("status") != "running":
        return
    reason = str(exc) if isinstance(exc, NasAttnError) else f"{type(exc).__name__}: {exc}"
    try:  # the error that ended the search is the one to report, not a second one here
        end_attempt(plan, manifest, "failed", reason=reason)
    except OSError:
        pass


def _search_then_measure(plan: SearchPlan, study, context, attempt: int, say: Callable[[str], None],
                         stop: StopRequest) -> None:
    """Run the trials still to run, then measure the front; a stop request ends either phase cleanly."""
    from nas_attn.results import count_finished
    from nas_attn.space.encoding import make_encoding
    from nas_attn.study import prepare_resume, record_interrupted

    encoding = make_encoding(plan.space)
    prepare_resume(study, encoding, say)
    finished = count_finished(study)
    remaining = max(0, plan.space.trials - finished)
    if plan.run.resuming:
        say(f"resume: {finished} trial(s) already finished, {remaining} to go")
    searcher = _run_trials(plan, study, encoding, context, remaining, finished, attempt, stop)
    if stop.failure is not None:
        raise stop.failure
    if stop.requested:
        numbers = record_interrupted(study, [live.trial.number for live in searcher.live.values()] if searcher else [])
        stop.check(f"{count_finished(study)} finished trial(s) kept; {len(numbers)} interrupted trial(s) will run "
                   f"again")
    if searcher is not None and searcher.too_tight:
        raise NasAttnError(f"{plan.space.path.name}: constraints: {searcher.too_tight}")
    _measure_front(plan, study, context, say, stop)


def _stop_on_write_failure(plan: SearchPlan, manifest: dict, exc: Exception) -> None:
    """The run folder cannot be written (a full disk): one line, and the command that resumes the run."""
    from nas_attn.manifest import end_attempt

    if isinstance(exc, OSError) and exc.errno not in WRITE_FAILURES:
        raise exc
    try:  # on a full disk this may fail too; the journal is what a resume needs, and it is intact
        end_attempt(plan, manifest, "failed", reason=str(exc))
    except OSError:
        pass
    what = str(exc) if isinstance(exc, JournalWriteError) else (
        f"cannot write in {plan.run.path} ({exc.strerror or exc}): the search stops, every completed trial is "
        f"kept")
    raise JournalWriteError(f"{what}; free space, then resume with: {_resume_command(plan)}") from None


def _resume_command(plan: SearchPlan) -> str:
    """The command that resumes this run: the same flags, the run folder named."""
    options = dataclasses.replace(plan.options, run_id=plan.run.path.name, resume=False,
                                  results_dir=str(plan.run.path.parent.parent))
    prog = "python search.py" if Path(sys.argv[0]).name == "search.py" else "nas-attn search"
    return options.command_line(prog)


def _create_run_folder(plan: SearchPlan, lock: RunLock, say: Callable[[str], None]) -> None:
    """The run folder, locked for this search; a resumed run's journal repaired and checked first."""
    from nas_attn.results import write_atomic
    from nas_attn.storage import check_study_present, repair_journal

    try:
        plan.run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasAttnError(f"--results-dir {plan.run.path.parent.parent}: cannot create {plan.run.path} "
                           f"({exc.strerror or exc})") from None
    lock.__enter__()  # no-op when it was taken before Ray started
    _log_ray_to(plan.run.path / RAY_LOG)
    if plan.run.resuming and not plan.options.storage:
        repair_journal(plan.run.journal, say)
        check_study_present(plan.run.path, plan.run.journal, plan.run.read_manifest())
    if not (plan.run.path / SPACE_COPY).exists():
        write_atomic(plan.run.path / SPACE_COPY, plan.space.path.read_text())


def _log_ray_to(path: Path) -> None:
    """Ray's and Tune's own log records go to a file in the run folder, not the terminal: a failing trial is
    already recorded (reason, traceback) by nas-attn, and the terminal keeps one line per event."""
    ray_logger = logging.getLogger("ray")
    for handler in ray_logger.handlers:
        handler.setLevel(logging.CRITICAL)
    handler = logging.FileHandler(path, delay=True)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger.addHandler(handler)
    logging.raiseExceptions = False  # a log file on a full disk must not print tracebacks of its own


def _open_storage(plan: SearchPlan):
    import optuna

    from nas_attn.storage import open_journal

    url = plan.options.storage
    if url:
        try:
            return optuna.storages.RDBStorage(url), url
        except Exception as exc:
            raise NasAttnError(f"--storage {url}: cannot open ({type(exc).__name__}: {exc})") from None
    return open_journal(plan.run.journal), str(plan.run.journal)


def _run_trials(plan: SearchPlan, study, encoding, context, remaining: int, finished: int, attempt: int,
                stop: StopRequest):
    """Ray Tune runs ``remaining`` trials proposed by the study; returns the searcher (``None``: none to run)."""
    from ray import tune

    from nas_attn.complexity import complexity
    from nas_attn.progress import Progress
    from nas_attn.searcher import StudyCallback, StudySearcher
    from nas_attn.trial import run_trial

    if not remaining:
        return None
    space, res = plan.space, plan.resources
    searcher = StudySearcher(study, encoding, cost=complexity, run=plan.run, seed_base=space.recipe.seed,
                             epochs=space.recipe.epochs, storage_scheme=plan.storage_scheme, on_failure=stop.fail)
    progress = Progress(study, space.trials, space.recipe.epochs, res.concurrency, finished,
                        mode="quiet" if plan.options.quiet else None)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context),
                                    {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(space), num_samples=remaining,
                                    max_concurrent_trials=res.concurrency, reuse_actors=True,
                                    trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}", storage_path=plan.tune_root, verbose=0,
            failure_config=tune.FailureConfig(max_failures=2), stop=stop,
            callbacks=[StudyCallback(searcher), progress]),
    )
    try:
        tuner.fit()
    finally:
        progress.close()
    return searcher


def _scheduler(space: SearchSpace):
    if space.asha is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", metric="val_acc", mode="max", max_t=space.recipe.epochs,
                         grace_period=space.asha_grace_period, reduction_factor=space.asha.reduction_factor)


def _measure_front(plan: SearchPlan, study, context, say: Callable[[str], None], stop: StopRequest) -> None:
    """Test accuracy of the front (and its re-evaluation with more seeds), once the search is over."""
    from nas_attn.front import evaluate_front, reevaluate_front
    from nas_attn.results import front_table, load_front_eval, trials_table

    front = front_table(trials_table(study, load_front_eval(plan.run.path)))
    evaluate_front(study, front, plan, context, say, stop)
    reevaluate_front(study, front, plan, context, say, stop)
    stop.check("the front is measured; its heatmaps were not made")
    _make_heatmaps(plan, study, context.data.open(), say)


def _make_heatmaps(plan: SearchPlan, study, splits: Splits, say: Callable[[str], None], images: int = 8) -> None:
    """Grad-CAM heatmaps of the vanilla trial and the front on a few fixed test images (for the dashboard)."""
    from nas_attn.heatmaps import heatmap_images, heatmap_trials, make_heatmaps
    from nas_attn.results import trials_table

    trials = heatmap_trials(trials_table(study))
    if not trials:
        return
    chosen = heatmap_images(splits.test, splits.mean, splits.std, plan.dataset.class_names,
                            plan.space.base.input_size, images)
    try:
        make_heatmaps(plan.run.path, trials, chosen)
    except NasAttnError as exc:  # e.g. weights on a worker's disk the driver cannot read: the rest stands
        say(f"heatmaps: not made ({exc}); `nas-attn heatmaps {plan.run.path}` makes them where the weights are")
        return
    say(f"heatmaps: trials {', '.join(map(str, trials))} on {images} test images in {plan.run.path.name}/heatmaps")

