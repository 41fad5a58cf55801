"""Runs whose trials are predictions (``inherit``, ``oneshot``): only trained figures make the front, the
hypervolume and front.csv; the retrained archs are paired with their predictions (predictions.csv, rank
agreement); the dashboard draws the predictions apart and, where there are retrainings, predicted against
retrained accuracy. Small journal studies written here: no Ray, no training."""

import base64
import json
import math
import re

import numpy as np
import optuna
import pandas as pd
import pytest

from nas_attn.arch import Arch, Placement
from nas_attn.dashboard.page import build_page
from nas_attn.dashboard.rundata import load_run
from nas_attn.heatmaps import heatmap_trials
from nas_attn.predictions import predictions_table, rank_agreement
from nas_attn.records import TrialAttrs
from nas_attn.results import export, front_table, hypervolume_history, trials_table
from nas_attn.storage import open_journal

optuna.logging.set_verbosity(optuna.logging.WARNING)

ARCHS = [[], [Placement(17, "ulsam")], [Placement(14, "ulsam")], [Placement(14, "se")], [Placement(17, "se")]]
#: (arch index, val acc, flops, evaluation, retrain_of, status): the vanilla trial trained from scratch (no
#: ``evaluation``: a run older than the strategies reads alike), four oneshot predictions (trial 1 would dominate
#: every trained point), then the predicted front retrained from scratch (trial 8 failed)
ONESHOT = [
    (0, 0.70, 100, None, None, "complete"),
    (1, 0.95, 90, "oneshot", None, "complete"),
    (2, 0.60, 120, "oneshot", None, "complete"),
    (3, 0.80, 110, "oneshot", None, "complete"),
    (4, 0.50, 130, "oneshot", None, "complete"),
    (1, 0.72, 90, "scratch", 1, "complete"),
    (3, 0.75, 110, "scratch", 3, "complete"),
    (2, 0.65, 120, "scratch", 2, "complete"),
    (4, None, 130, "scratch", 4, "failed"),
]
SCRATCH = [(0, 0.70, 100, None, None, "complete"), (1, 0.72, 90, None, None, "complete"),
           (2, 0.65, 120, "scratch", None, "complete")]


def _run(tmp_path, name, rows) -> tuple:
    """A run folder with a journal study of ``rows`` and a manifest, as a search leaves them."""
    run = tmp_path / "space" / name
    run.mkdir(parents=True)
    study = optuna.create_study(study_name="space", storage=open_journal(run / "optuna.journal"),
                                directions=["maximize", "minimize"])
    for arch, acc, flops, evaluation, retrain_of, status in rows:
        trial = study.ask()
        attrs = dict(arch=Arch("mobilenetv2", placements=ARCHS[arch]).to_json(), flops=flops, params=1000 + flops,
                     status=status, val_acc_final=acc, evaluation=evaluation, retrain_of=retrain_of)
        TrialAttrs.set_on(trial, **{k: v for k, v in attrs.items() if v is not None})
        if status == "complete":
            study.tell(trial, [acc, flops])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    strategy = {"name": "oneshot"} if any(r[3] == "oneshot" for r in rows) else None
    (run / "manifest.json").write_text(json.dumps({"space": "space", "study_name": "space", "status": "finished",
                                                   "objectives": ["val_acc", "flops"], "strategy": strategy}))
    return run, study


def test_trials_table_carries_the_evaluation_and_a_nullable_retrain_of(tmp_path):
    _, study = _run(tmp_path, "r1", ONESHOT)
    trials = trials_table(study)
    assert trials["evaluation"].isna().tolist() == [True] + [False] * 8
    assert trials["evaluation"].dropna().tolist() == [*["oneshot"] * 4, *["scratch"] * 4]
    assert str(trials["retrain_of"].dtype) == "Int64"
    assert trials["retrain_of"].isna().tolist() == [True] * 5 + [False] * 4
    assert trials["retrain_of"].dropna().tolist() == [1, 3, 2, 4]


def test_the_front_and_front_csv_leave_predictions_out(tmp_path):
    run, study = _run(tmp_path, "r1", ONESHOT)
    trials = trials_table(study)
    assert front_table(trials)["trial"].tolist() == [5, 6]  # 0.72@90, 0.75@110; prediction 1 (0.95@90) left out
    assert heatmap_trials(trials) == [0, 5, 6]  # the vanilla trial and the trained front
    _, front = export(run, study)
    assert front["trial"].tolist() == [5, 6]
    assert pd.read_csv(run / "front.csv")["trial"].tolist() == [5, 6]
    # a table without the column (written before the strategies) is all trained
    assert front_table(trials.drop(columns=["evaluation"]))["trial"].tolist() == [1]


def test_the_hypervolume_counts_trained_trials_only(tmp_path):
    _, study = _run(tmp_path, "r1", ONESHOT)
    hv = hypervolume_history(study, [0.0, 200.0])
    assert hv["trial"].tolist() == [0, 5, 6, 7]  # complete trained trials, under their own numbers
    # 0.70 x (200-100), then 0.72 x 110 dominating it, then + 0.03 x 90 for 0.75@110; 0.65@120 adds nothing
    assert np.allclose(hv["hypervolume"], [70.0, 79.2, 81.9, 81.9])
    _, plain = _run(tmp_path, "r2", SCRATCH)
    assert hypervolume_history(plain, [0.0, 200.0])["trial"].tolist() == [0, 1, 2]


def test_predictions_table_pairs_each_retraining_with_its_prediction(tmp_path):
    _, study = _run(tmp_path, "r1", ONESHOT)
    table = predictions_table(trials_table(study))
    assert list(table.columns) == ["trial", "retrain_of", "evaluation", "placements", "flops", "predicted_val_acc",
                                   "val_acc", "status"]
    assert table["trial"].tolist() == [5, 6, 7, 8] and table["retrain_of"].tolist() == [1, 3, 2, 4]
    assert table["evaluation"].tolist() == ["oneshot"] * 4
    assert table["predicted_val_acc"].tolist() == [0.95, 0.80, 0.60, 0.50]
    assert table["val_acc"].tolist()[:3] == [0.72, 0.75, 0.65] and math.isnan(table["val_acc"].iloc[3])
    assert table["status"].tolist() == ["complete", "complete", "complete", "failed"]
    assert table["flops"].tolist() == [90, 110, 120, 130]
    assert table["placements"].tolist() == trials_table(study).set_index("trial").loc[[5, 6, 7, 8], "placements"].tolist()
    # pairs (1,3) discordant, (1,2) and (3,2) concordant: τ = (2 - 1) / 3; ranks 3,2,1 against 2,3,1: ρ = 1 - 6·2/24
    agreement = rank_agreement(table)
    assert agreement["n"] == 3
    assert agreement["kendall_tau"] == pytest.approx(1 / 3) and agreement["spearman_rho"] == pytest.approx(0.5)
    _, plain = _run(tmp_path, "r2", SCRATCH)
    assert predictions_table(trials_table(plain)).empty and predictions_table(pd.DataFrame()).empty


def _table(predicted, retrained, status=None):
    n = len(predicted)
    return pd.DataFrame({"trial": range(n), "retrain_of": range(n), "evaluation": ["inherit"] * n,
                         "placements": ["-"] * n, "flops": [1.0] * n, "predicted_val_acc": predicted,
                         "val_acc": retrained, "status": status or ["complete"] * n})


def test_rank_agreement_against_hand_computed_cases():
    same = rank_agreement(_table([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.9]))
    assert same == {"n": 4, "kendall_tau": pytest.approx(1.0), "spearman_rho": pytest.approx(1.0)}
    reversed_ = rank_agreement(_table([0.1, 0.2, 0.3, 0.4], [0.9, 0.7, 0.6, 0.5]))
    assert reversed_ == {"n": 4, "kendall_tau": pytest.approx(-1.0), "spearman_rho": pytest.approx(-1.0)}
    # fewer than three complete rows: none; a failed retraining does not count
    assert rank_agreement(_table([0.1, 0.2], [0.5, 0.6])) == {"n": 2, "kendall_tau": None, "spearman_rho": None}
    assert rank_agreement(_table([0.1, 0.2, 0.3], [0.5, 0.6, float("nan")], ["complete", "complete", "failed"]))[
        "kendall_tau"] is None
    assert rank_agreement(_table([], [])) == {"n": 0, "kendall_tau": None, "spearman_rho": None}
    # undefined (a constant column): None, not NaN
    assert rank_agreement(_table([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))["kendall_tau"] is None


def test_export_writes_the_predictions_and_removes_stale_ones(tmp_path):
    run, study = _run(tmp_path, "r1", ONESHOT)
    export(run, study)
    written = pd.read_csv(run / "predictions.csv")
    assert written["trial"].tolist() == [5, 6, 7, 8] and written["retrain_of"].tolist() == [1, 3, 2, 4]
    agreement = json.loads((run / "predictions.json").read_text())
    assert agreement["n"] == 3 and agreement["kendall_tau"] == pytest.approx(1 / 3)
    assert agreement["spearman_rho"] == pytest.approx(0.5)
    plain, plain_study = _run(tmp_path, "r2", SCRATCH)
    for name in ("predictions.csv", "predictions.json"):  # left by an earlier export: now stale
        (plain / name).write_text("stale")
    export(plain, plain_study)
    assert not (plain / "predictions.csv").exists() and not (plain / "predictions.json").exists()


def _figure(html, div_id):
    spec = re.search(rf'<div class="graph" id="{div_id}"></div><script>\(function \(\) {{ const f = (\{{.*?\}}); ',
                     html, re.S)
    return json.loads(spec.group(1).replace("<\\/", "</")) if spec else None


def _values(v):
    """A plotly array as a list (plotly writes numpy arrays as base64 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def _trials(trace):
    return sorted(c[1] for c in trace["customdata"])


def test_the_dashboard_draws_predictions_apart_and_predicted_against_retrained(tmp_path):
    run, _ = _run(tmp_path, "r1", ONESHOT)
    data = load_run(run)
    assert data.front["trial"].tolist() == [5, 6]
    html = build_page([data])
    pareto = _figure(html, "pareto")
    by_kind = {t["meta"]["kind"]: t for t in pareto["data"]}
    assert _trials(by_kind["complete"]) == [0, 5, 6, 7]  # trained points only
    assert _trials(by_kind["predicted"]) == [1, 2, 3, 4] and by_kind["predicted"]["name"] == "predicted (oneshot)"
    assert by_kind["predicted"]["marker"]["symbol"].endswith("-open")
    assert _trials(by_kind["front"]) == [5, 6]
    assert _values(_figure(html, "hypervolume")["data"][0]["x"]) == [0, 5, 6, 7]
    figure = _figure(html, "predictions")
    assert figure is not None
    title = figure["layout"]["title"]["text"]
    assert "Kendall τ 0.33" in title and "Spearman ρ 0.50" in title and "n = 3" in title and "oneshot" in title
    (retrained,) = figure["data"]
    assert _trials(retrained) == [5, 6, 7] and sorted(c[2] for c in retrained["customdata"]) == [1, 2, 3]
    table = re.search(r'<table class="sortable" id="front-table">.*?</table>', html, re.S).group(0)
    assert sorted(map(int, re.findall(r'data-trial="(\d+)"', table))) == [5, 6]
    payload = json.loads(re.search(r"const NAS = (\{.*?\});</script>", html, re.S).group(1).replace("<\\/", "</"))
    trials = payload["runs"][0]["trials"]
    assert trials["1"]["evaluation"] == "oneshot" and trials["5"]["retrain_of"] == 1 and trials["0"]["retrain_of"] is None
    assert "retrain of</th>" in html  # the all-trials table says which prediction each retraining checks
    # a folder whose study is gone: the same front and figure from trials.parquet
    export(run, load_run(run).study)
    (run / "optuna.journal").unlink()
    again = load_run(run)
    assert again.study is None and again.front["trial"].tolist() == [5, 6]
    assert "n = 3" in _figure(build_page([again]), "predictions")["layout"]["title"]["text"]


def test_the_dashboard_of_a_run_without_predictions_has_no_such_figure(tmp_path):
    run, _ = _run(tmp_path, "r2", SCRATCH)
    html = build_page([load_run(run)])
    assert _figure(html, "predictions") is None and 'id="predictions"' not in html
    assert "retrain of</th>" not in html
    assert not [t for t in _figure(html, "pareto")["data"] if t["meta"]["kind"] == "predicted"]
