"""Results of a run, derived from its Optuna study: tables, the Pareto front, hypervolume, export.

Everything a trial leaves is stored in its Optuna trial (values and user attributes), so the study is the
single source of truth; ``trials.parquet``, ``history.parquet``, ``front.csv`` and ``archs/`` are views of it,
rewritten whole at the end of a run (and of a resumed run).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from pydantic import TypeAdapter, ValidationError

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError, validation_message
from nas_attn.fsutil import atomic_target, write_atomic
from nas_attn.predictions import write_predictions
from nas_attn.records import EPOCH_KEYS, FrontEval, Manifest, TrialAttrs, TrialStatus
from nas_attn.strategy import is_prediction

#: the fields of a trial's :class:`~nas_attn.records.TrialAttrs` that become columns of the trials table (and
#: the front's test accuracies)
_ATTR_COLUMNS = ["status", "reason", "params", "flops", "val_acc_best", "val_acc_final", "epochs_run", "seed",
                 "wall_s", "train_s", "startup_s", "launch_s", "node", "node_id", "device", "restarts", "tune_trial_id",
                 "checkpoint", "traceback", "latency_ms", "test_acc", "val_top5_final", "test_top5", "evaluation",
                 "retrain_of"]


FRONT_EVAL = "front_eval.json"

_FRONT_EVAL = TypeAdapter(dict[str, FrontEval])


def load_front_eval(run_dir: Path) -> dict[int, FrontEval]:
    """Measurements made after the search on front trials (test accuracy, re-evaluation), by trial number:
    the one reader of ``front_eval.json`` (:class:`~nas_attn.records.FrontEval`).

    Raises:
        NasAttnError: the file is not JSON, or a value is of the wrong type or out of range (one line naming
            the file and the key).
    """
    path = Path(run_dir) / FRONT_EVAL
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError) as exc:
        raise NasAttnError(f"{path}: not a front evaluation file ({type(exc).__name__}: {exc}); "
                           f"{_MOVE_AWAY}") from None
    return {int(k): v for k, v in _check_front_eval(path, data).items()}


_MOVE_AWAY = "move it away to measure the front again"


def _check_front_eval(path: Path, data: Any) -> dict[str, FrontEval]:
    if not isinstance(data, dict):
        raise NasAttnError(f"{path}: not a JSON object of trial numbers; {_MOVE_AWAY}")
    bad = next((k for k in data if not (k.isascii() and k.isdigit() and len(k) < 10)), None)
    if bad is not None:
        raise NasAttnError(f"{path}: key {bad[:80]!r} is not a trial number; {_MOVE_AWAY}")
    try:
        return _FRONT_EVAL.validate_python(data)
    except ValidationError as exc:
        raise NasAttnError(f"{path}: {validation_message(exc)}; {_MOVE_AWAY}") from None


def save_front_eval(run_dir: Path, evals: dict[int, FrontEval]) -> None:
    """The one writer of ``front_eval.json`` (keys left out where not measured)."""
    data = {str(k): v.model_dump(mode="json", exclude_none=True) for k, v in sorted(evals.items())}
    write_atomic(Path(run_dir) / FRONT_EVAL, json.dumps(data, indent=2))


#: study user attribute listing the trial numbers a killed search left running (each re-run under a new number)
INTERRUPTED_KEY = "interrupted_trials"


def interrupted_trials(study: optuna.Study) -> frozenset[int]:
    return frozenset(study.user_attrs.get(INTERRUPTED_KEY, []))


def open_run_study(run_dir: Path, manifest: Manifest) -> optuna.Study | None:
    """A run's study, read-only: the run folder's own journal (wherever the folder was moved), else the RDB
    named in its manifest; ``None`` before the search created it. Readers need no lock."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = manifest.storage or ""
    journal = Path(run_dir) / "optuna.journal"
    if journal.is_file():
        backend = JournalStorage(JournalFileBackend(str(journal)))
    elif "://" in storage:
        backend = optuna.storages.RDBStorage(storage)
    else:
        return None
    try:
        return optuna.load_study(study_name=manifest.study_name or manifest.space, storage=backend)
    except KeyError:  # the search has not created its study yet
        return None


def trial_status(t: optuna.trial.FrozenTrial, interrupted: frozenset[int] = frozenset()) -> TrialStatus:
    """Our status of an Optuna trial (``running`` while Optuna has it running or waiting)."""
    if t.number in interrupted:
        return TrialStatus.INTERRUPTED
    if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
        return TrialStatus.RUNNING
    status = TrialAttrs.of(t, history=False).status
    if status is not None:
        return TrialStatus(status)
    return {optuna.trial.TrialState.COMPLETE: TrialStatus.COMPLETE,
            optuna.trial.TrialState.PRUNED: TrialStatus.PRUNED}.get(t.state, TrialStatus.FAILED)


def count_finished(study: optuna.Study, keep: Callable[[TrialAttrs], bool] | None = None) -> int:
    """Trials that count against the budget (complete, pruned, failed); with ``keep``, only those whose
    attributes it keeps (one phase of a strategy: its predictions, its retrainings)."""
    interrupted = interrupted_trials(study)
    return sum(1 for t in study.get_trials(deepcopy=False) if trial_status(t, interrupted).finished
               and (keep is None or keep(TrialAttrs.of(t, history=False))))


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """The trials of a trials table by status (what an attempt's end records in the manifest)."""
    return {str(k): int(v) for k, v in trials["status"].value_counts().items()} if len(trials) else {}


def trials_table(study: optuna.Study, front_eval: dict[int, FrontEval] | None = None) -> pd.DataFrame:
    """One row per trial that ran or was refused (interrupted attempts, re-run under a new number, left out)."""
    front_eval = front_eval or {}
    interrupted = interrupted_trials(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        status, attrs = trial_status(t, interrupted), TrialAttrs.of(t)
        if status in (TrialStatus.RUNNING, TrialStatus.INTERRUPTED) or attrs.arch is None:
            continue
        arch = Arch.from_json(attrs.arch)
        row: dict[str, Any] = {"trial": t.number, "arch": attrs.arch, "placements": arch.short(),
                               "n_placements": len(arch.placements)}
        values = attrs.to_dict()
        row.update({k: values.get(k) for k in _ATTR_COLUMNS})
        measured = front_eval.get(t.number, FrontEval())
        row["test_acc"], row["test_top5"] = measured.test_acc, measured.test_top5
        row["vanilla"] = not arch.placements
        row["status"] = status.value
        for p in arch.placements:
            key = f"p{p.position}" + ("" if p.op != "insert" else "_after")
            row[f"{key}_module"], row[f"{key}_groups"], row[f"{key}_op"] = p.module, p.groups, p.op
        row["started"] = t.datetime_start.isoformat() if t.datetime_start else None
        row["finished"] = t.datetime_complete.isoformat() if t.datetime_complete else None
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return empty_trials_table()
    fixed = ["trial", "status", "reason", "evaluation", "retrain_of", "placements", "params", "flops", "latency_ms",
             "val_acc_best", "val_acc_final", "val_top5_final", "test_acc", "test_top5", "epochs_run", "seed", "wall_s",
             "train_s", "startup_s", "launch_s", "node", "device"]
    rest = sorted(c for c in df.columns if c not in fixed)
    df = df.reindex(columns=fixed + rest).sort_values("trial").reset_index(drop=True)
    df["retrain_of"] = df["retrain_of"].astype("Int64")  # a trial number, or <NA> (not a float column)
    return df


def empty_trials_table() -> pd.DataFrame:
    """The trials table of a run with no trial yet."""
    df = pd.DataFrame(columns=["trial", "arch", "placements", "n_placements", "vanilla", *_ATTR_COLUMNS])
    df["retrain_of"] = df["retrain_of"].astype("Int64")
    return df


def prediction_mask(trials: pd.DataFrame) -> pd.Series:
    """Rows whose accuracy is a prediction (``evaluation`` ``inherit`` or ``oneshot``), never a trained figure;
    all false on a table written before the strategies (no ``evaluation`` column)."""
    if "evaluation" not in trials.columns:
        return pd.Series(False, index=trials.index)
    return trials["evaluation"].map(is_prediction).astype(bool)


def trained_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows of a trials table whose figures come from training (predictions left out): what the front,
    ``front.csv`` and the hypervolume are made of."""
    return trials[~prediction_mask(trials)]


HISTORY_COLUMNS = ["trial", *EPOCH_KEYS]


def history_table(study: optuna.Study) -> pd.DataFrame:
    """Per-epoch curves: one row per (trial, epoch)."""
    interrupted = interrupted_trials(study)
    rows = [{"trial": t.number, **h.to_dict()} for t in study.get_trials(deepcopy=False)
            if trial_status(t, interrupted).finished for h in TrialAttrs.of(t).history]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS) if rows else pd.DataFrame(columns=HISTORY_COLUMNS)


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n × k) under ``directions``.

    Optuna's public front (``study.best_trials``) is over all objectives of one study; the front here is on
    accuracy vs FLOPs only (also when params is a third objective) and on table rows (also several runs
    overlaid in the dashboard), hence this small function. Duplicated points are all kept.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return np.zeros(0, dtype=bool)
    signs = np.array([-1.0 if d.startswith("max") else 1.0 for d in directions])
    v = v * signs  # all minimised
    le = (v[:, None, :] <= v[None, :, :]).all(-1)  # le[i, j]: i is no worse than j everywhere
    lt = (v[:, None, :] < v[None, :, :]).any(-1)
    dominated = (le & lt).any(0)
    return ~dominated


def front_table(trials: pd.DataFrame, metric: str = "val_acc_final") -> pd.DataFrame:
    """Complete trained trials non-dominated on (``metric`` max, flops min), sorted by flops. Predictions
    (:func:`prediction_mask`) are left out: their accuracy is a fine-tuned or supernet score, not comparable
    with a trained one; the archs they put on the predicted front are on it once retrained."""
    trained = trained_trials(trials)
    done = trained[trained["status"] == TrialStatus.COMPLETE.value]
    if done.empty:
        return done.copy()
    mask = pareto_mask(done[[metric, "flops"]].to_numpy(dtype=float), ["maximize", "minimize"])
    return done[mask].sort_values(["flops", metric]).reset_index(drop=True)


REEVAL_KEYS = ("seeds", "val_mean", "val_std", "test_mean", "test_std")


def add_reeval_columns(front: pd.DataFrame, front_eval: dict[int, FrontEval]) -> pd.DataFrame:
    """``reeval_*`` columns (``--reevaluate-front``: K more seeds, mean ± std) on front rows, when measured."""
    if front.empty or not any(e.reeval is not None for e in front_eval.values()):
        return front
    front = front.copy()
    reevals = [front_eval.get(int(n), FrontEval()).reeval for n in front["trial"]]
    for key in REEVAL_KEYS:
        front[f"reeval_{key}"] = [getattr(r, key) if r is not None else None for r in reevals]
    return front


def hypervolume_history(study: optuna.Study, reference_point: Sequence[float]) -> pd.DataFrame:
    """Hypervolume of the front after each trained trial, computed by Optuna (``plot_hypervolume_history``).

    Predictions (told to Optuna as complete) are left out, as from the front: Optuna then sees a copy of the
    study holding only the other complete trials, whose points are put back under their own trial numbers.
    """
    numbers = None
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if any(is_prediction(t.user_attrs.get("evaluation")) for t in complete):
        kept = [t for t in complete if not is_prediction(t.user_attrs.get("evaluation"))]
        if not kept:
            return pd.DataFrame(columns=["trial", "hypervolume"])
        numbers = [t.number for t in kept]  # the copy numbers them 0, 1, … in this order
        study = optuna.create_study(directions=study.directions)
        study.add_trials(kept)
    with warnings.catch_warnings():  # "experimental" since Optuna 3.3: its figure's data is all we use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fig = optuna.visualization.plot_hypervolume_history(study, list(reference_point))
    if not fig.data or fig.data[0].x is None or not len(fig.data[0].x):
        return pd.DataFrame(columns=["trial", "hypervolume"])
    x = [numbers[int(n)] for n in fig.data[0].x] if numbers is not None else list(fig.data[0].x)
    return pd.DataFrame({"trial": x, "hypervolume": list(fig.data[0].y)})


def default_reference_point(trials: pd.DataFrame, objectives: Sequence[str]) -> list[float]:
    """Accuracy 0, and 1.1 × the largest flops / params seen: fixed for a run once its trials are known."""
    ref = []
    for o in objectives:
        if o == "val_acc":
            ref.append(0.0)
        else:
            col = pd.to_numeric(trials.get(o), errors="coerce") if o in trials else pd.Series(dtype=float)
            ref.append(float(col.max() * 1.1) if col.notna().any() else 1.0)
    return ref


def export(run_dir: Path, study: optuna.Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write trials.parquet, history.parquet, front.csv and archs/<trial>.json, and in a run that retrained
    predictions predictions.csv and predictions.json (:func:`nas_attn.predictions.write_predictions`); return
    (trials, front)."""
    run_dir = Path(run_dir)
    evals = load_front_eval(run_dir)
    trials = trials_table(study, evals)
    history = history_table(study)
    front = add_reeval_columns(front_table(trials), evals)
    for name, df in (("trials.parquet", trials), ("history.parquet", history)):
        with atomic_target(run_dir / name) as tmp:
            df.to_parquet(tmp, index=False)
    front_cols = [c for c in ["trial", "placements", "params", "flops", "latency_ms", "val_acc_final", "val_acc_best",
                              "val_top5_final", "test_acc", "test_top5",
                              *(f"reeval_{k}" for k in REEVAL_KEYS), "seed", "epochs_run", "arch"]
                  if c in front.columns]
    write_atomic(run_dir / "front.csv", front.reindex(columns=front_cols).to_csv(index=False))
    archs = run_dir / "archs"
    archs.mkdir(exist_ok=True)
    for row in trials.itertuples():
        write_atomic(archs / f"{row.trial}.json", json.dumps(json.loads(row.arch), indent=2) + "\n")
    write_predictions(run_dir, trials)
    return trials, front


def format_front(front: pd.DataFrame) -> str:
    """The front as a plain-text table for the terminal."""
    if front.empty:
        return "(no complete trial: empty front)"
    latency = "latency_ms" in front and front["latency_ms"].notna().any()
    digits = mflops_digits(front["flops"].tolist())
    lines = [f"{'trial':>5} {'val acc':>8} {'test acc':>8} {'MFLOPs':>{digits + 7}} {'params':>9}"
             + (f" {'ms':>8}" if latency else "") + "  placements"]
    for r in front.itertuples():
        test = f"{r.test_acc:.4f}" if isinstance(r.test_acc, float) and not np.isnan(r.test_acc) else "-"
        ms = f" {r.latency_ms:>8.3f}" if latency else ""
        lines.append(f"{r.trial:>5} {r.val_acc_final:>8.4f} {test:>8} {r.flops / 1e6:>{digits + 7}.{digits}f} "
                     f"{int(r.params):>9}{ms}  {r.placements}")
    return "\n".join(lines)


def format_training(trials: pd.DataFrame) -> str:
    """``nas-attn train``'s table: the arch once, each complete seed's accuracy, then mean ± std over the seeds
    (sample std; one seed has none)."""
    done = trials[trials["status"] == TrialStatus.COMPLETE.value].sort_values("trial")
    if done.empty:
        return "(no seed completed)"
    first = done.iloc[0]
    lines = [f"arch: {first['placements']}; {first['flops'] / 1e6:.2f} MFLOPs, {int(first['params']):,} params",
             f"{'trial':>5} {'seed':>6} {'val acc':>13} {'test top-1':>13} {'test top-5':>13}"]
    for r in done.itertuples():  # 13 wide: the mean ± std cells below ("0.8123±0.0042")
        lines.append(f"{r.trial:>5} {int(r.seed):>6} {r.val_acc_final:>13.4f} {_figure(r.test_acc):>13} "
                     f"{_figure(r.test_top5):>13}")
    if len(done) > 1:
        cells = [_mean_std(done[c]) for c in ("val_acc_final", "test_acc", "test_top5")]
        lines.append(f"{'mean ± std':>12} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13}")
    return "\n".join(lines)


def _figure(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) and not np.isnan(value) else "-"


def _mean_std(column: pd.Series) -> str:
    values = pd.to_numeric(column, errors="coerce").dropna()
    return f"{values.mean():.4f}±{values.std(ddof=1):.4f}" if len(values) > 1 else "-"


def mflops_digits(flops: list[float], most: int = 6) -> int:
    """Decimals of MFLOPs enough to tell every two different counts apart (2 at least, ``most`` at most): a
    front point printed with the same figure as another looks dominated by it (issue 25)."""
    values = sorted({int(f) for f in flops})
    for digits in range(2, most + 1):
        shown = {round(v / 1e6, digits) for v in values}
        if len(shown) == len(values):
            return digits
    return most
