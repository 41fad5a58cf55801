"""How well a run's predictions ranked the archs they put on the predicted front (torch-free).

In an ``inherit`` or ``oneshot`` run (:mod:`nas_attn.strategy`) most trials are predictions; the archs of the
predicted front are then trained from scratch as trials whose ``retrain_of`` names the prediction they check.
:func:`predictions_table` pairs each such retraining with its prediction, :func:`rank_agreement` says how
well the two orders agree (Kendall τ, Spearman ρ), and :func:`write_predictions` keeps both in the run folder
(``predictions.csv``, ``predictions.json``), beside the tables :func:`nas_attn.results.export` writes.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas_attn.fsutil import write_atomic
from nas_attn.records import TrialStatus

#: the columns of :func:`predictions_table` (and of ``predictions.csv``)
PREDICTIONS_COLUMNS = ["trial", "retrain_of", "evaluation", "placements", "flops", "predicted_val_acc", "val_acc",
                       "status"]
PREDICTIONS_CSV = "predictions.csv"
#: :func:`rank_agreement` of ``predictions.csv``'s rows: ``n``, ``kendall_tau``, ``spearman_rho``
PREDICTIONS_JSON = "predictions.json"
#: fewer complete retrainings than this give no rank correlation
MIN_AGREEMENT_ROWS = 3


def _empty() -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype=object) for c in PREDICTIONS_COLUMNS})
    table = table.astype({"trial": "int64", "retrain_of": "Int64", "flops": "Int64", "predicted_val_acc": float,
                          "val_acc": float})
    return table


def predictions_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per retraining (a trial whose ``retrain_of`` is set), sorted by trial number.

    Columns: ``trial`` (the retraining), ``retrain_of`` (the prediction it checks), ``evaluation`` (the
    prediction's: ``inherit`` or ``oneshot``), ``placements``, ``flops``, ``predicted_val_acc`` (the
    prediction's final validation accuracy), ``val_acc`` (the retraining's, NaN unless it completed) and
    ``status`` (the retraining's). Empty for a run that retrained nothing (or a table older than the
    strategies, without a ``retrain_of`` column).
    """
    if not len(trials) or "retrain_of" not in trials.columns:
        return _empty()
    of = pd.to_numeric(trials["retrain_of"], errors="coerce")
    retrains = trials[of.notna()]
    if retrains.empty:
        return _empty()
    of = of[retrains.index].astype("int64").to_numpy()
    predicted = trials.drop_duplicates("trial").set_index("trial").reindex(of)
    evaluation = predicted["evaluation"] if "evaluation" in predicted.columns else pd.Series(None, index=of)
    complete = (retrains["status"] == TrialStatus.COMPLETE.value).to_numpy()
    table = pd.DataFrame({
        "trial": retrains["trial"].astype("int64").to_numpy(),
        "retrain_of": pd.array(of, dtype="Int64"),
        "evaluation": [e if isinstance(e, str) else None for e in evaluation],
        "placements": retrains["placements"].to_numpy(),
        "flops": pd.array(pd.to_numeric(retrains["flops"], errors="coerce").astype("Float64"), dtype="Int64"),
        "predicted_val_acc": pd.to_numeric(predicted["val_acc_final"], errors="coerce").to_numpy(dtype=float),
        "val_acc": np.where(complete, pd.to_numeric(retrains["val_acc_final"], errors="coerce").to_numpy(dtype=float),
                            np.nan),
        "status": retrains["status"].to_numpy(),
    })
    return table.sort_values("trial").reset_index(drop=True)


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def rank_agreement(table: pd.DataFrame) -> dict[str, Any]:
    """How well the predictions ranked the retrained archs: ``n`` (complete retrainings with both figures),
    ``kendall_tau`` and ``spearman_rho`` of predicted against retrained accuracy (``scipy.stats``); each
    ``None`` with fewer than :data:`MIN_AGREEMENT_ROWS` rows, or where undefined (a constant column)."""
    if table.empty:
        return {"n": 0, "kendall_tau": None, "spearman_rho": None}
    done = table[table["status"] == TrialStatus.COMPLETE.value]
    x = pd.to_numeric(done["predicted_val_acc"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(done["val_acc"], errors="coerce").to_numpy(dtype=float)
    both = np.isfinite(x) & np.isfinite(y)
    n = int(both.sum())
    if n < MIN_AGREEMENT_ROWS:
        return {"n": n, "kendall_tau": None, "spearman_rho": None}
    from scipy import stats

    with warnings.catch_warnings():  # a constant column: scipy warns and answers NaN, reported as None
        warnings.simplefilter("ignore")
        tau = stats.kendalltau(x[both], y[both]).statistic
        rho = stats.spearmanr(x[both], y[both]).statistic
    return {"n": n, "kendall_tau": _finite(tau), "spearman_rho": _finite(rho)}


def write_predictions(run_dir: Path, trials: pd.DataFrame) -> pd.DataFrame:
    """Write ``predictions.csv`` (:func:`predictions_table`) and ``predictions.json`` (:func:`rank_agreement`)
    in ``run_dir`` when the run retrained predictions; otherwise remove stale ones. Returns the table."""
    run_dir = Path(run_dir)
    table = predictions_table(trials)
    if table.empty:
        for name in (PREDICTIONS_CSV, PREDICTIONS_JSON):
            (run_dir / name).unlink(missing_ok=True)
        return table
    write_atomic(run_dir / PREDICTIONS_CSV, table.to_csv(index=False))
    write_atomic(run_dir / PREDICTIONS_JSON, json.dumps(rank_agreement(table), indent=2) + "\n")
    return table


def agreement_text(agreement: dict[str, Any]) -> str:
    """``Kendall τ 0.80, Spearman ρ 0.90, n = 5`` (``–`` where not defined)."""
    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    return (f"Kendall τ {fmt(agreement['kendall_tau'])}, Spearman ρ {fmt(agreement['spearman_rho'])}, "
            f"n = {agreement['n']}")
