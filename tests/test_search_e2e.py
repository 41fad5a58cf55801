"""End to end through search.py: real Ray (local), real Optuna, real training on real Fashion-MNIST images."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from searchutil import REPO, env, launcher_of, load_study, only_run, search, session_gone, write_space

from nas_attn import Arch, build_model, complexity
from nas_attn.results import pareto_mask


def test_smoke_run_leaves_every_result_file(smoke_run):
    run, r = smoke_run
    for name in ("trials.parquet", "history.parquet", "front.csv", "manifest.json", "optuna.journal", "space.yaml"):
        assert (run / name).is_file(), name
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "finished" and m["space_sha256"] and m["versions"]["optuna"] and m["attempts"][0]["ended"]
    assert "bundled stratified sample" in m["dataset"]["source"] and m["dataset"]["train"] == 600
    assert m["dataset"]["test"] == 500 and "test set (500, a stratified subset)" in r.stdout  # cpu_budget.test_subset
    assert "data: fashion_mnist from bundled stratified sample" in r.stdout and "12000 train / 2000 test" in r.stdout
    assert "Pareto front" in r.stdout and f"results: {run}" in r.stdout and "trials 4/4 done" in r.stdout
    # no GPU here: the space's cpu_budget ran instead of its full budget (6 trials x 2 epochs at width 0.5)
    assert m["budget"] == {"trials": 4, "epochs": 1, "width": 0.35, "cpu_budget_applied": True,
                           "note": m["budget"]["note"]} and "no GPU: using the space's cpu_budget" in r.stdout
    assert m["recipe"]["batch_size"] == 32 and m["recipe"]["lr"] == 0.05 and m["encoding"] == "joint"
    assert load_study(run, "smoke").metric_names == ["val_acc", "flops"]  # what optuna-dashboard shows


def test_smoke_progress_lines_are_consistent(smoke_run):
    """Output that is not a terminal gets plain lines: one per finished trial, and status lines whose counts add
    up, never go back, and end at the budget (issue: '8/8 done, 1 running' and an ETA that did not move)."""
    _, r = smoke_run
    status = [tuple(map(int, m)) for m in re.findall(
        r"trials (\d+)/(\d+) done \((\d+) complete, (\d+) pruned, (\d+) failed", r.stdout)]
    assert status and all(budget == 4 and done == c + p + f for done, budget, c, p, f in status), status
    dones = [s[0] for s in status]
    assert dones == sorted(dones) and dones[-1] == 4
    finished = re.findall(r"^trial (\d+): (?:val|failed|stopped)", r.stdout, re.M)
    assert sorted(map(int, finished)) == list(range(4))
    assert re.search(r"trials 4/4 done \(4 complete, 0 pruned, 0 failed\), 0 running", r.stdout)


def test_smoke_trials_and_history_are_consistent(smoke_run):
    run, _ = smoke_run
    trials = pd.read_parquet(run / "trials.parquet")
    history = pd.read_parquet(run / "history.parquet")
    assert len(trials) == 4 and trials["trial"].is_unique and set(trials["status"]) == {"complete"}
    assert trials["vanilla"].sum() == 1  # the vanilla backbone is always evaluated first
    for row in trials.itertuples():
        arch = Arch.from_json(row.arch)
        assert complexity(arch) == {"params": row.params, "flops": row.flops}
        assert (run / "archs" / f"{row.trial}.json").is_file()
        h = history[history["trial"] == row.trial]
        assert len(h) == row.epochs_run == 1 and h["val_acc"].iloc[-1] == row.val_acc_final
        assert row.device.startswith("cpu") and row.node and row.wall_s > 0
        assert Arch.from_json(row.arch).width == 0.35  # the CPU budget's width
    assert trials["val_acc_best"].max() > 0.15  # well above chance (0.1) after one short epoch


def test_smoke_front_is_non_dominated_and_rebuilds(smoke_run):
    run, _ = smoke_run
    trials = pd.read_parquet(run / "trials.parquet")
    front = pd.read_csv(run / "front.csv")
    assert len(front) >= 1 and set(front["trial"]) <= set(trials["trial"])
    done = trials[trials["status"] == "complete"]
    mask = pareto_mask(done[["val_acc_final", "flops"]].to_numpy(float), ["maximize", "minimize"])
    assert set(done[mask]["trial"]) == set(front["trial"])
    for row in front.itertuples():
        arch = Arch.from_json((run / "archs" / f"{row.trial}.json").read_text())
        model = build_model(arch)
        assert sum(p.numel() for p in model.parameters()) == row.params
        assert complexity(arch)["flops"] == row.flops
        assert 0.1 < row.test_acc <= 1.0  # test accuracy measured once per front arch
        assert row.reeval_seeds == 2 and 0 <= row.reeval_val_std < 0.5 and 0.05 < row.reeval_test_mean <= 1


ASHA_AND_FAILURE = """
imports: [failing_attention]
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 400, val_subset: 200, test_subset: 200}
search:
  positions: [14, 17]
  modules: [none, ulsam]
  groups: [2, 4]
  ops: [insert, substitute]
  overrides:
    17: {modules: [none, ulsam, explode], ops: [insert]}
sampler: {name: random, seed: 1}
budget: {trials: 8, concurrency: 2}
resources: {cpu: 1, gpu: 0}
train: {epochs: 3, batch_size: 32, lr: 0.05, bn_recalibration: 256}
early_stopping: {scheduler: asha, grace_period: 1, reduction_factor: 3}
"""


@pytest.mark.slow
def test_asha_stops_are_pruned_failures_are_recorded_and_the_run_completes(tmp_path):
    """Also: the study in an RDB (--storage sqlite:///…) instead of the run folder's journal."""
    space = write_space(tmp_path / "asha_fail.yaml", ASHA_AND_FAILURE)
    results = tmp_path / "results"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    r = search("--space", space, "--results-dir", results, "--storage", url)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = only_run(results, "asha_fail")
    trials = pd.read_parquet(run / "trials.parquet")
    status = trials.set_index("trial")["status"]
    failed = trials[trials["status"] == "failed"]
    assert len(trials) == 8
    assert len(failed) >= 1 and failed["reason"].str.contains("explode: this module always fails").all()
    assert (failed["placements"].str.contains("explode")).all()
    assert (status == "pruned").sum() >= 1 and (status == "complete").sum() >= 1
    pruned = trials[trials["status"] == "pruned"]
    assert (pruned["epochs_run"] < 3).all() and pruned["reason"].str.contains("ASHA").all()
    front = pd.read_csv(run / "front.csv")
    assert set(front["trial"]) <= set(trials[trials["status"] == "complete"]["trial"])  # no pruned, no failed
    assert not (run / "optuna.journal").exists()
    # in a database that other runs may share, the study is the space's and the run's
    assert json.loads((run / "manifest.json").read_text())["study_name"] == f"asha_fail/{run.name}"
    study = optuna.load_study(study_name=f"asha_fail/{run.name}", storage=url)
    for t in study.trials:
        expected = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
        assert t.state == expected[status[t.number]]
    from nas_attn.dashboard.rundata import load_run

    assert len(load_run(run).trials) == 8  # the dashboard opens the RDB study named in the manifest


KILL_RESUME = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 400, val_subset: 200, test_subset: 200}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
sampler: {name: nsga2, seed: 0, population_size: 4}
budget: {trials: 5, concurrency: 1}
resources: {cpu: 1, gpu: 0}
train: {epochs: 1, batch_size: 32, lr: 0.05, bn_recalibration: 256}
"""


def _complete(run):
    try:
        return [t for t in load_study(run, "resumable").trials if t.state == TrialState.COMPLETE]
    except Exception:  # the study may not exist yet
        return []


@pytest.mark.slow
def test_kill_9_then_resume_loses_no_completed_trial(tmp_path):
    space = write_space(tmp_path / "resumable.yaml", textwrap.dedent(KILL_RESUME))
    results = tmp_path / "results"
    run = results / "resumable" / "r1"
    log = open(tmp_path / "first.log", "w")
    p = subprocess.Popen([sys.executable, str(REPO / "search.py"), "--space", str(space), "--results-dir",
                          str(results), "--run-id", "r1"], stdout=log, stderr=subprocess.STDOUT, env=env(),
                         cwd=REPO, start_new_session=True)
    _, ray_session = launcher_of(p.pid)
    deadline = time.time() + 400
    while time.time() < deadline and len(_complete(run)) < 2 and p.poll() is None:
        time.sleep(1)
    os.killpg(p.pid, signal.SIGKILL)  # the driver's whole group; Ray's node lives in a session of its own
    p.wait()
    before = {t.number: (t.values, t.user_attrs["arch"]) for t in _complete(run)}
    assert 2 <= len(before) < 5, (tmp_path / "first.log").read_text()[-2000:]

    # resumed at once, while the killed search's Ray may still be shutting down: it must not disturb this one
    r = search("--space", space, "--results-dir", results, "--run-id", "r1")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"resume: {len(before)} trial(s) already finished" in r.stdout
    assert session_gone(ray_session, timeout=5), "the killed search's Ray node outlived it"
    study = load_study(run, "resumable")
    complete = {t.number: t for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 5
    for number, (values, arch) in before.items():  # kept as they were
        assert complete[number].values == values and complete[number].user_attrs["arch"] == arch
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 5 and trials["trial"].is_unique and (trials["status"] == "complete").all()
    m = json.loads((run / "manifest.json").read_text())
    assert len(m["attempts"]) == 2 and m["status"] == "finished"
    killed, resumed = m["attempts"]  # the killed attempt, closed by the resume with the trials it left
    assert killed["status"] == "killed" and killed["ended"] is None and killed["counts"] == {"complete": len(before)}
    assert resumed["status"] == "finished" and resumed["counts"] == {"complete": 5}


def test_nan_loss_fails_the_trial_with_its_reason():
    from nas_attn.data import load_dataset, make_splits
    from nas_attn.recipe import Recipe
    from nas_attn.train import TrialFailed, train_arch

    splits = make_splits(load_dataset(input_size=32), 0.1, 0, train_subset=128, val_subset=64)
    arch = Arch("mobilenetv2", width=0.35, num_classes=10, input_size=32, in_chans=1, small_input=True)
    with pytest.raises(TrialFailed, match="non-finite training loss at epoch 1"):
        train_arch(arch, splits, Recipe(epochs=1, batch_size=32, lr=1e12, bn_recalibration=0))


def test_pareto_mask():
    v = np.array([[0.9, 10], [0.8, 5], [0.85, 12], [0.9, 10], [0.7, 20]])
    assert pareto_mask(v, ["maximize", "minimize"]).tolist() == [True, True, False, True, False]


def test_optuna_dashboard_reads_the_study_and_its_metric_names(smoke_run):
    """optuna-dashboard (its own storage loader and HTTP API, served on 127.0.0.1) labels the objectives."""
    import threading
    import urllib.request
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna_dashboard import wsgi

    run, _ = smoke_run

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    # given the journal's path, as on `optuna-dashboard RUN_DIR/optuna.journal`, it opens it with its own loader
    server = make_server("127.0.0.1", 0, wsgi(str(run / "optuna.journal")), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=30).read())["study_summaries"]
        smoke = next(s for s in studies if s["study_name"] == "smoke")
        detail = json.loads(urllib.request.urlopen(f"{base}/api/studies/{smoke['study_id']}", timeout=30).read())
    finally:
        server.shutdown()
    assert detail["objective_names"] == ["val_acc", "flops"] and detail["directions"] == ["maximize", "minimize"]
    assert len(detail["trials"]) == 4
