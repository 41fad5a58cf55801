"""A search: Optuna proposes archs from a space, Ray Tune trains them as trials, results land in a run folder.

``python search.py --space NAME_OR_PATH [...]`` (also ``nas-attn search``). See :func:`build_parser`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from nas_attn.cli import OneLineArgumentParser, run_cli
from nas_attn.errors import NasAttnError, SpaceError
from nas_attn.space import SAMPLERS, SearchSpace

REPO = Path(__file__).resolve().parent.parent
STUDY_JOURNAL = "optuna.journal"


def build_parser(prog: str = "search.py") -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog=prog, description="Search attention placements: Optuna samplers propose, "
                                                     "Ray Tune trains, the run folder keeps the Pareto front.")
    p.add_argument("--space", required=True, help="a name in search_spaces/ or a path to a .yaml file")
    p.add_argument("--trials", type=int, help="trials to finish (complete, pruned or failed); default: the space's")
    p.add_argument("--epochs", type=int, help="epochs per trial; default: the space's")
    p.add_argument("--dataset", choices=["fashion_mnist", "cifar10", "cifar100", "imagefolder"])
    p.add_argument("--data-root", help="dataset folder (first source tried)")
    p.add_argument("--results-dir", default="results", help="default: ./results")
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


def main(argv: list[str] | None = None, prog: str = "search.py") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: run_search(args), prog)


# -- trial side (runs in Ray workers) ---------------------------------------------------------------------

def run_trial(config: dict[str, Any], splits, recipe, imports: list[str], threads: int) -> None:
    """Ray Tune function trainable: train one arch, report every epoch, checkpoint the final weights.

    Failures inside training are reported as a result (``failed`` + ``reason``), so the search records
    them and goes on; only a lost process or node reaches Tune as an error (and is retried).
    """
    t0 = time.perf_counter()
    import ray
    import torch
    from ray import tune

    from nas_attn.arch import Arch
    from nas_attn.complexity import complexity
    from nas_attn.train import train_arch

    torch.set_num_threads(max(1, threads))
    info: dict[str, Any] = {"node": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id()}
    try:
        for mod in imports:
            importlib.import_module(mod)
        arch = Arch.from_json(config["arch"])
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        info["device"] = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{threads}"
        info.update(complexity(arch))

        def report(stats, model) -> None:
            if "startup_s" not in info:  # trial start to its first training step
                info["startup_s"] = round(time.perf_counter() - t0 - stats.epoch_s, 3)
            metrics = {**vars(stats), **info, "completed": stats.epoch == recipe.epochs}
            if stats.epoch < recipe.epochs:
                tune.report(metrics)
                return
            with tempfile.TemporaryDirectory() as d:
                torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, Path(d) / "model.pt")
                (Path(d) / "arch.json").write_text(config["arch"])
                tune.report({**metrics, "train_s": round(time.perf_counter() - t0, 3)},
                            checkpoint=tune.Checkpoint.from_directory(d))

        train_arch(arch, splits, recipe, seed=config["seed"], device=device, report=report)
    except Exception as exc:  # recorded as a failed trial with its reason; the search goes on
        from nas_attn.train import TrialFailed

        reason = str(exc).splitlines()[0] if str(exc) else ""
        if not isinstance(exc, TrialFailed):
            reason = f"{type(exc).__name__}: {reason}"
        tune.report({"failed": True, "reason": reason[:500], **info})


def latest_checkpoint(trial_uri: str):
    """(filesystem, path) of a trial's newest ``checkpoint_*`` folder, local or remote (s3://, gs://, …)."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(trial_uri) if "://" in trial_uri else (pafs.LocalFileSystem(), trial_uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    found = sorted(i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))
    if not found:
        raise FileNotFoundError(f"no checkpoint under {trial_uri}")
    return fs, found[-1]


def _evaluate_checkpoint(arch_json: str, trial_uri: str, splits, threads: int) -> float:
    import torch
    from ray.tune import Checkpoint

    from nas_attn.arch import Arch
    from nas_attn.train import test_accuracy

    torch.set_num_threads(max(1, threads))
    fs, path = latest_checkpoint(trial_uri)
    with tempfile.TemporaryDirectory() as d:
        Checkpoint(path, filesystem=fs).to_directory(d)
        state = torch.load(Path(d) / "model.pt", map_location="cpu", weights_only=True)
    return test_accuracy(Arch.from_json(arch_json), state, splits)


def _retrain(arch_json: str, splits, recipe, seed: int, threads: int, imports: list[str]) -> tuple[float, float]:
    import torch

    from nas_attn.arch import Arch
    from nas_attn.train import test_accuracy, train_arch

    torch.set_num_threads(max(1, threads))
    for mod in imports:
        importlib.import_module(mod)
    arch = Arch.from_json(arch_json)
    res = train_arch(arch, splits, recipe, seed=seed, keep_weights=True)
    return res.history[-1].val_acc, test_accuracy(arch, res.state_dict, splits)


# -- driver side ------------------------------------------------------------------------------------------

def _say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, flush=True)


def _resolve_run_dir(args, space: SearchSpace) -> tuple[Path, bool]:
    base = Path(args.results_dir).expanduser().resolve() / space.name
    if args.run_id:
        if "/" in args.run_id or args.run_id in ("", ".", ".."):
            raise NasAttnError(f"--run-id {args.run_id!r}: must be a plain folder name")
        run_dir = base / args.run_id
        return run_dir, (run_dir / "manifest.json").exists()
    if args.resume:
        runs = sorted(p for p in base.glob("*") if (p / "manifest.json").exists()) if base.exists() else []
        if not runs:
            raise NasAttnError(f"--resume: no earlier run of space {space.name!r} under {base}")
        return runs[-1], True
    return base / dt.datetime.now().strftime("%Y%m%d-%H%M%S"), False


def _apply_flags(space: SearchSpace, args) -> SearchSpace:
    checks = [("--trials", args.trials, 1), ("--epochs", args.epochs, 1), ("--concurrency", args.concurrency, 1),
              ("--reevaluate-front", args.reevaluate_front, 0)]
    for flag, value, low in checks:
        if value is not None and value < low:
            raise NasAttnError(f"{flag}: must be >= {low}, got {value}")
    if args.gpus_per_trial is not None and not 0 <= args.gpus_per_trial:
        raise NasAttnError(f"--gpus-per-trial: must be >= 0, got {args.gpus_per_trial}")
    if args.gpus_per_trial and args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial):
        raise NasAttnError(f"--gpus-per-trial: above 1 it must be a whole number, got {args.gpus_per_trial}")
    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise NasAttnError(f"--cpus-per-trial: must be > 0, got {args.cpus_per_trial}")
    if args.data_root and not Path(args.data_root).expanduser().is_dir():
        raise NasAttnError(f"--data-root {args.data_root}: no such directory")
    recipe = replace(space.recipe, epochs=args.epochs or space.recipe.epochs, compile=args.compile or
                     space.recipe.compile, seed=space.recipe.seed if args.seed is None else args.seed)
    return replace(
        space, trials=args.trials or space.trials, sampler=args.sampler or space.sampler,
        sampler_seed=space.sampler_seed if args.seed is None else args.seed, recipe=recipe,
        gpus_per_trial=space.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial,
        cpus_per_trial=args.cpus_per_trial or space.cpus_per_trial, concurrency=args.concurrency or space.concurrency,
    )


def _cpu_budget(space: SearchSpace, args) -> tuple[SearchSpace, str | None]:
    """Without a GPU, the space's smaller ``cpu_budget`` (flags given explicitly still win)."""
    b = space.cpu_budget
    if not b or args.full_budget:
        return space, None
    recipe = replace(space.recipe, epochs=args.epochs or b.get("epochs", space.recipe.epochs),
                     batch_size=b.get("batch_size", space.recipe.batch_size), lr=float(b.get("lr", space.recipe.lr)))
    new = replace(space, trials=args.trials or b.get("trials", space.trials), recipe=recipe,
                  train_subset=b.get("train_subset", space.train_subset),
                  val_subset=b.get("val_subset", space.val_subset), width=float(b.get("width", space.width)),
                  concurrency=args.concurrency or b.get("concurrency", space.concurrency))
    note = ", ".join(f"{k} {v}" for k, v in b.items())
    return new, (f"no GPU: using the space's cpu_budget ({note}) instead of {space.trials} trials x "
                 f"{space.recipe.epochs} epochs at width {space.width}; --full-budget runs the full one")


def _make_sampler(space: SearchSpace, seed: int):
    import optuna

    if space.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=space.population_size or 16, seed=seed)
    if space.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          n_startup_trials=min(10, max(2, space.trials // 4)))
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.GPSampler(seed=seed)


def _check_sampler(name: str) -> None:
    """Refuse, before anything runs, a sampler this installation cannot provide."""
    if name != "gp":
        return
    import optuna

    if not hasattr(optuna.samplers, "GPSampler"):
        raise NasAttnError(f"sampler gp: this Optuna ({optuna.__version__}) has no GPSampler")
    try:
        import scipy  # noqa: F401  (Optuna's GPSampler needs it; it is not a dependency of nas-attn)
    except ImportError:
        raise NasAttnError("sampler gp: Optuna's GPSampler needs scipy (pip install scipy)") from None


def _open_storage(args, run_dir: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if args.storage:
        try:
            return optuna.storages.RDBStorage(args.storage), args.storage
        except Exception as exc:
            raise NasAttnError(f"--storage {args.storage}: cannot open ({type(exc).__name__}: {exc})") from None
    path = run_dir / STUDY_JOURNAL
    return JournalStorage(JournalFileBackend(str(path))), str(path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def _versions() -> dict[str, str]:
    import optuna
    import ray
    import timm
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "optuna": optuna.__version__, "ray": ray.__version__,
            "nas_attn": __import__("nas_attn").__version__}


def _prepare_study(study, space: SearchSpace, say) -> int:
    """Resume bookkeeping; returns how many trials already finished.

    Trials left RUNNING by a killed search never reported: they are marked interrupted and their params
    enqueued so that they run again under a new number (the interrupted number is left out of the tables).
    """
    from optuna.trial import TrialState

    from nas_attn.results import INTERRUPTED_KEY, count_finished

    interrupted = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    if interrupted:  # recorded on the study: a finished trial's attributes can no longer be set
        known = study.user_attrs.get(INTERRUPTED_KEY, [])
        study.set_user_attr(INTERRUPTED_KEY, sorted({*known, *(t.number for t in interrupted)}))
    for t in interrupted:
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"rerun_of": t.number})
    if interrupted:
        say(f"resume: {len(interrupted)} interrupted trial(s) will run again: "
            f"{', '.join(str(t.number) for t in interrupted)}")
    if not study.get_trials(deepcopy=False) and space.include_vanilla and space.vanilla_params():
        study.enqueue_trial(space.vanilla_params(), user_attrs={"vanilla": True})
    return count_finished(study)


def run_search(args) -> int:
    """Validate everything, then search; see :func:`build_parser` for the flags."""
    from nas_attn.data import load_dataset
    from nas_attn.space import load_space

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    # A failed trial's last result has no val_acc; ASHA skips such results, but Tune's strict check would
    # abort the whole search on it.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def say(message: str) -> None:
        _say(message, args.quiet)

    dataset_name = args.dataset
    in_chans = None if dataset_name is None else (1 if dataset_name == "fashion_mnist" else 3)
    space = load_space(args.space, in_chans=in_chans, dataset=dataset_name)
    space = _apply_flags(space, args)
    _check_sampler(space.sampler)
    run_dir, resuming = _resolve_run_dir(args, space)
    if resuming and (run_dir / "space.yaml").exists():
        recorded = json.loads((run_dir / "manifest.json").read_text()).get("space_sha256")
        if recorded and recorded != space.sha256:
            raise SpaceError(f"{space.path}: changed since run {run_dir.name} started (sha256 differs); "
                             f"resume with the same file or start a new run")
    for w in space.warnings:
        say(f"warning: {space.path.name}: {w}")

    ds = load_dataset(space.dataset, args.data_root, space.input_size)
    space = replace(space, num_classes=ds.num_classes, in_chans=ds.in_chans)
    say(f"data: {ds.describe()}")

    import ray

    started = dt.datetime.now(dt.timezone.utc)
    if args.address:
        try:
            ray.init(address=args.address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:
            raise NasAttnError(f"--address {args.address}: cannot join the Ray cluster ({exc})") from None
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        return _search(args, space, ds, run_dir, resuming, started, say)
    finally:
        ray.shutdown()


def _search(args, space, ds, run_dir: Path, resuming: bool, started, say) -> int:
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from nas_attn.data import make_splits
    from nas_attn.progress import Progress
    from nas_attn.results import export, format_front, front_table, trials_table, write_atomic
    from nas_attn.searcher import NasOptunaSearch

    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0)
    budget_note = None
    if gpus == 0:
        space, budget_note = _cpu_budget(space, args)
        space = replace(space, gpus_per_trial=0.0)
        if budget_note:
            say(budget_note)
    cpus_per_trial = space.cpus_per_trial
    concurrency = space.concurrency or max(1, int(
        gpus / space.gpus_per_trial if space.gpus_per_trial else resources.get("CPU", 1) / cpus_per_trial))
    splits = make_splits(ds, space.val_fraction, space.recipe.seed, space.train_subset, space.val_subset)
    say(f"split: {len(splits.train_y)} train / {len(splits.val_y)} validation images (seed {space.recipe.seed}); "
        f"test set ({len(splits.test_y)}) kept for the final front")
    say(space.summary() + f"; {concurrency} at once, {cpus_per_trial:g} CPU + {space.gpus_per_trial:g} GPU each")

    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "space.yaml").exists():
        write_atomic(run_dir / "space.yaml", space.path.read_text())
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    attempt = len(manifest.get("attempts", [])) + 1
    storage, storage_url = _open_storage(args, run_dir)
    manifest.update({
        "space": space.name, "space_file": str(space.path), "space_sha256": space.sha256, "run_id": run_dir.name,
        "study_name": space.name, "storage": storage_url, "objectives": space.objectives,
        "directions": space.directions, "versions": _versions(), "git_commit": _git_commit(),
        "tune_storage": args.storage_path or "RUN_DIR/tune",
        "dataset": {"name": ds.name, "source": ds.source, "train": len(splits.train_y), "val": len(splits.val_y),
                    "test": len(splits.test_y), "input_size": space.input_size, "seed": space.recipe.seed},
        "budget": {"trials": space.trials, "epochs": space.recipe.epochs, "width": space.width,
                   "cpu_budget_applied": budget_note is not None, "note": budget_note},
        "recipe": space.recipe.to_dict(), "sampler": space.sampler, "asha": space.asha,
        "resources": {"cpus_per_trial": cpus_per_trial, "gpus_per_trial": space.gpus_per_trial,
                      "concurrency": concurrency,
                      "cluster": {k: resources[k] for k in ("CPU", "GPU") if k in resources}},
        "status": "running",
    })
    manifest.setdefault("attempts", []).append({"command": sys.argv, "started": started.isoformat(), "ended": None})
    write_atomic(manifest_path, json.dumps(manifest, indent=2))

    study = optuna.create_study(storage=storage, study_name=space.name, directions=space.directions,
                                load_if_exists=True)
    finished = _prepare_study(study, space, say)
    remaining = max(0, space.trials - finished)
    if resuming:
        say(f"resume: {finished} trial(s) already finished, {remaining} to go")
    exp_name = f"attempt-{attempt}"
    if args.storage_path:
        tune_root = args.storage_path.rstrip("/") + f"/{space.name}/{run_dir.name}"
        checkpoint_root = f"{tune_root}/{exp_name}"
    else:
        tune_root, checkpoint_root = str(run_dir / "tune"), f"tune/{exp_name}"  # relative: the folder can move
    searcher = NasOptunaSearch(
        space, sampler=_make_sampler(space, space.sampler_seed + len(study.trials)), storage=storage,
        study_name=space.name, seed_base=space.recipe.seed, checkpoint_root=checkpoint_root,
        epochs=space.recipe.epochs,
    )
    t_search = time.time()
    if remaining:
        scheduler = None
        if space.asha:
            scheduler = ASHAScheduler(time_attr="training_iteration", metric="val_acc", mode="max",
                                      max_t=space.recipe.epochs, grace_period=space.asha["grace_period"],
                                      reduction_factor=space.asha["reduction_factor"])
        trainable = tune.with_resources(
            tune.with_parameters(run_trial, splits=splits, recipe=space.recipe, imports=space.imports,
                                 threads=max(1, int(cpus_per_trial))),
            {"cpu": cpus_per_trial, "gpu": space.gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining,
                                        max_concurrent_trials=concurrency,
                                        trial_dirname_creator=lambda t: t.trial_id, reuse_actors=True),
            run_config=tune.RunConfig(
                name=exp_name, storage_path=tune_root, verbose=0,
                failure_config=tune.FailureConfig(max_failures=2),
                callbacks=[Progress(searcher, space.trials, concurrency, quiet=args.quiet)],
            ),
        )
        tuner.fit()
    if searcher.too_tight:
        raise NasAttnError(f"{space.path.name}: constraints: {searcher.too_tight}")
    search_s = time.time() - t_search

    front = front_table(trials_table(study))  # which archs get their test accuracy measured
    _evaluate_front(study, front, run_dir, splits, space, cpus_per_trial, say)
    if args.reevaluate_front:
        _reevaluate_front(study, front, run_dir, splits, space, args.reevaluate_front, cpus_per_trial, say)
    trials, front = export(run_dir, study)
    manifest["attempts"][-1]["ended"] = dt.datetime.now(dt.timezone.utc).isoformat()
    manifest["attempts"][-1]["search_s"] = round(search_s, 1)
    manifest["status"] = "finished"
    manifest["counts"] = trials["status"].value_counts().to_dict() if len(trials) else {}
    write_atomic(manifest_path, json.dumps(manifest, indent=2))
    counts = ", ".join(f"{v} {k}" for k, v in manifest["counts"].items()) or "no trials"
    print(f"\n{space.name}: {counts}; Pareto front (validation accuracy vs FLOPs):\n{format_front(front)}")
    print(f"results: {run_dir}")
    return 0


def _front_trials(study, front) -> list:
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [by_number[int(n)] for n in front["trial"]] if len(front) else []


def _evaluate_front(study, front, run_dir: Path, splits, space, cpus: float, say) -> None:
    """Test accuracy of each front trial's final weights, measured once (kept in front_eval.json)."""
    import ray

    from nas_attn.results import load_front_eval, save_front_eval

    evals = load_front_eval(run_dir)
    todo = [t for t in _front_trials(study, front) if "test_acc" not in evals.get(t.number, {})]
    if not todo:
        return
    say(f"front: measuring test accuracy of {len(todo)} arch(s) on {len(splits.test_y)} test images")
    task = ray.remote(num_cpus=cpus, num_gpus=space.gpus_per_trial)(_evaluate_checkpoint)
    splits_ref = ray.put(splits)
    refs = []
    for t in todo:
        uri = t.user_attrs["checkpoint"]
        uri = uri if "://" in uri or uri.startswith("/") else str(run_dir / uri)  # relative to the run folder
        refs.append((t.number, task.remote(t.user_attrs["arch"], uri, splits_ref, int(cpus))))
    for number, ref in refs:
        try:
            evals.setdefault(number, {})["test_acc"] = float(ray.get(ref))
        except Exception as exc:  # e.g. a checkpoint on a worker's local disk: say so, keep the rest
            say(f"front: trial {number}: no test accuracy ({str(exc).strip().splitlines()[-1][:200]})")
    save_front_eval(run_dir, evals)


def _reevaluate_front(study, front, run_dir: Path, splits, space, k: int, cpus: float, say) -> None:
    """Retrain each front arch with ``k`` new seeds; keep mean ± std of validation and test accuracy."""
    import numpy as np
    import ray

    from nas_attn.results import load_front_eval, save_front_eval

    evals = load_front_eval(run_dir)
    todo = [t for t in _front_trials(study, front) if evals.get(t.number, {}).get("reeval", {}).get("seeds") != k]
    if not todo:
        return
    say(f"front: re-evaluating {len(todo)} arch(s) with {k} seeds each")
    task = ray.remote(num_cpus=cpus, num_gpus=space.gpus_per_trial)(_retrain)
    splits_ref = ray.put(splits)
    jobs = [(t.number, [task.remote(t.user_attrs["arch"], splits_ref, space.recipe, 10_000 + 97 * t.number + i,
                                    int(cpus), space.imports) for i in range(k)]) for t in todo]
    for number, refs in jobs:
        vals = np.array(ray.get(refs))
        spread = vals.std(0, ddof=1) if k > 1 else np.zeros(2)
        evals.setdefault(number, {})["reeval"] = {
            "seeds": k, "val_mean": float(vals[:, 0].mean()), "val_std": float(spread[0]),
            "test_mean": float(vals[:, 1].mean()), "test_std": float(spread[1])}
    save_front_eval(run_dir, evals)
