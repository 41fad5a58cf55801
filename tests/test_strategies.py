"""Evaluation strategies (issue 21): the choice of archs to retrain, the space key and flag and what they refuse,
the searcher's weight inheritance, and each strategy end to end on a small space, killed (kill -9) in each of its
phases and resumed without losing finished work."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher
from searchutil import REPO, env, load_study, search, write_space

from nas_attn.records import TrialAttrs, TrialConfig
from nas_attn.runfolder import RunFolder
from nas_attn.searcher import StudySearcher
from nas_attn.space import RunSettings, load_space
from nas_attn.space.encoding import make_encoding
from nas_attn.strategy import Strategy, pick_for_retraining
from nas_attn.study import make_sampler, prepare_resume, record_interrupted

OBJ = ["val_acc", "flops"]


# -- which predictions are retrained ----------------------------------------------------------------------------

def test_pick_takes_the_predicted_front_spread_along_its_cost():
    # five non-dominated points (accuracy up with FLOPs) and two dominated ones
    front = [(0, (0.50, 10)), (1, (0.60, 20)), (2, (0.70, 30)), (3, (0.80, 40)), (4, (0.90, 50))]
    dominated = [(5, (0.55, 25)), (6, (0.40, 60))]
    assert pick_for_retraining(front + dominated, OBJ, 5) == [0, 1, 2, 3, 4]
    assert pick_for_retraining(front + dominated, OBJ, 3) == [0, 2, 4]  # both ends and the middle
    assert pick_for_retraining(front + dominated, OBJ, 2) == [0, 4]
    assert pick_for_retraining(front + dominated, OBJ, 1) == [4]  # one place: the most accurate
    # more places than the front: the next front fills them (5 dominates only by 1; 6 by everyone)
    assert pick_for_retraining(front + dominated, OBJ, 6) == [0, 1, 2, 3, 4, 5]
    assert pick_for_retraining(front + dominated, OBJ, 50) == [0, 1, 2, 3, 4, 5, 6]
    assert pick_for_retraining([], OBJ, 4) == []


def test_pick_is_the_same_whatever_the_order_of_the_candidates():
    cands = [(n, (0.5 + 0.01 * (n % 7), 10 + n)) for n in range(40)]
    picks = pick_for_retraining(cands, OBJ, 4)
    assert len(picks) == 4 == len(set(picks))
    assert pick_for_retraining(list(reversed(cands)), OBJ, 4) == picks


def test_pick_reads_each_objective_in_its_direction_wherever_it_is():
    # three objectives: accuracy up, FLOPs and params down; 1 is dominated by 0 in all three
    cands = [(0, (0.9, 10, 5)), (1, (0.8, 11, 6)), (2, (0.7, 5, 9))]
    assert sorted(pick_for_retraining(cands, ["val_acc", "flops", "params"], 2)) == [0, 2]
    # the objectives in another order: the same picks, the spread along FLOPs, one place the most accurate
    front = [(n, (10.0 * (n + 1), 0.5 + 0.1 * n)) for n in range(5)]  # (flops, val_acc)
    assert pick_for_retraining(front, ["flops", "val_acc"], 1) == [4]
    assert pick_for_retraining(front, ["flops", "val_acc"], 3) == [0, 2, 4]
    by_params = [(n, (0.5 + 0.1 * n, 10.0 * (n + 1))) for n in range(5)]  # no FLOPs: the first cost objective
    assert pick_for_retraining(by_params, ["val_acc", "params"], 2) == [0, 4]


# -- the space key, the flag, and what they refuse ---------------------------------------------------------------

SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]EXTRA_SEARCH}
sampler: {name: random, seed: 0}
train: {epochs: 4}
EXTRA
"""


def _space(tmp_path, extra="", extra_search="", name="strat"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(SPACE.replace("EXTRA_SEARCH", extra_search).replace("EXTRA", extra)))
    return path


def test_strategy_defaults_follow_the_recipe(tmp_path):
    space = load_space(str(_space(tmp_path)))
    assert space.strategy == Strategy("scratch", inherit_epochs=2, supernet_epochs=12, scored=16 * 32)
    run = space.for_run(RunSettings(strategy="oneshot", epochs=2, trials=5), cpu_budget=False, num_classes=10,
                        in_chans=1)
    assert run.strategy.name == "oneshot" and run.strategy.supernet_epochs == 6 and run.strategy.inherit_epochs == 1
    assert run.strategy.scored == 80  # 16 x the trials budget
    given = load_space(str(_space(tmp_path, "strategy: {name: inherit, inherit_epochs: 3, retrain_top_k: 2}")))
    assert given.for_arch(given.arch([]), 1).strategy.name == "scratch"  # nas-attn train: from scratch
    assert (given.strategy.name, given.strategy.inherit_epochs, given.strategy.retrain_top_k) == ("inherit", 3, 2)
    assert "evaluation inherit (fine-tune 3 epoch(s)" in given.summary()


@pytest.mark.parametrize("extra, message", [
    ("strategy: {name: oneshot}\nearly_stopping: {grace_period: 1}",
     "early_stopping and strategy oneshot do not combine"),
    ("strategy: {name: fewshot}", "strategy.name"),
    ("strategy: {retrain_top_k: 0}", "strategy.retrain_top_k"),
    ("strategy: {supernet_epochs: -1}", "strategy.supernet_epochs"),
    ("strategy: {scored: 0}", "strategy.scored"),
    ("strategy: {bn_image: 5}", "bn_image"),
])
def test_a_bad_strategy_section_is_one_line_naming_the_key(tmp_path, extra, message):
    r = search("--space", _space(tmp_path, extra), "--results-dir", tmp_path / "results", timeout=120)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists()  # nothing half-written


@pytest.mark.parametrize("args, extra, extra_search, message", [
    (["--strategy", "inherit"], "", ", include_vanilla: false", "rules out the vanilla backbone"),
    (["--strategy", "oneshot"], "objectives: [val_acc, latency_ms]", "", "latency_ms as an objective"),
    (["--strategy", "oneshot"], "early_stopping: {grace_period: 1}", "", "does not combine with the space's early"),
    (["--strategy", "fewshot"], "", "", "--strategy: invalid choice"),
])
def test_a_strategy_the_space_cannot_take_is_refused_before_anything_runs(tmp_path, args, extra, extra_search,
                                                                          message):
    r = search("--space", _space(tmp_path, extra, extra_search), "--results-dir", tmp_path / "results", *args,
               timeout=120)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists()


def test_strategy_is_a_search_flag_not_a_training_one(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nas_attn", "train", "--arch", '{"backbone": "mobilenetv2"}',
                        "--strategy", "inherit"], capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    assert r.returncode == 2 and "--strategy" in r.stderr and "Traceback" not in r.stderr


# -- weight inheritance in the searcher: the vanilla trial first -------------------------------------------------

def _inherit_searcher(tmp_path):
    space = load_space(str(_space(tmp_path))).for_run(RunSettings(strategy="inherit"), cpu_budget=False,
                                                      num_classes=10, in_chans=1)
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 0))
    encoding = make_encoding(space)
    prepare_resume(study, encoding, lambda s: None)  # a new study: the vanilla trial enqueued
    searcher = StudySearcher(study, encoding, cost=None, run=RunFolder(tmp_path / "run", False), seed_base=0,
                             epochs=4, inherit_epochs=space.strategy.inherit_epochs)
    return searcher, study


def test_inheritance_waits_for_the_vanilla_trial_then_hands_its_checkpoint_to_every_other(tmp_path):
    searcher, study = _inherit_searcher(tmp_path)
    first = TrialConfig.from_config(searcher.suggest("t0"))
    assert json.loads(first.arch)["placements"] == [] and first.start_from is None and first.epochs is None
    assert searcher.suggest("t1") is None and searcher.suggest("t2") is None  # Tune asks again later
    assert len(study.trials) == 1
    vanilla = searcher.live["t0"].trial
    TrialAttrs.set_on(vanilla, checkpoint="tune/attempt-1/t0/checkpoint_000000")
    study.tell(vanilla, [0.5, 1.0])
    searcher.live.pop("t0")
    configs = [TrialConfig.from_config(searcher.suggest(f"t{i}")) for i in range(3, 9)]
    assert all(c.start_from == "tune/attempt-1/t0/checkpoint_000000" and c.epochs == 2 for c in configs)
    evaluations = [t.user_attrs["evaluation"] for t in study.trials]
    assert evaluations == ["scratch"] + ["inherit"] * 6


def test_inheritance_stops_when_the_vanilla_trial_failed_and_reruns_an_interrupted_one(tmp_path):
    searcher, study = _inherit_searcher(tmp_path)
    searcher.suggest("t0")
    record_interrupted(study, [searcher.live.pop("t0").trial.number])  # killed: enqueued again, still scratch
    again = TrialConfig.from_config(searcher.suggest("t1"))
    assert json.loads(again.arch)["placements"] == [] and again.start_from is None
    assert study.trials[-1].user_attrs["evaluation"] == "scratch"
    for n, trial_id in enumerate(("t1", "t2")):  # a failure is retried once in an attempt, then it ends it
        live = searcher.live.pop(trial_id).trial
        TrialAttrs.set_on(live, status="failed", reason="RuntimeError: out of memory")
        study.tell(live, state=TrialState.FAIL)
        if n == 0:
            retry = TrialConfig.from_config(searcher.suggest("t2"))
            assert json.loads(retry.arch)["placements"] == [] and retry.start_from is None
    assert searcher.suggest("t3") == Searcher.FINISHED
    assert "vanilla trial 2 failed (RuntimeError: out of memory)" in searcher.too_tight
    assert "a resume trains it once more" in searcher.too_tight
    vanillas = [t for t in study.trials if t.user_attrs.get("evaluation") == "scratch"]
    assert [t.state for t in vanillas] == [TrialState.FAIL] * 3  # interrupted, failed, failed: no fourth


def test_while_the_vanilla_trial_is_retried_the_other_slots_wait(tmp_path):
    searcher, study = _inherit_searcher(tmp_path)
    searcher.suggest("t0")
    live = searcher.live.pop("t0").trial
    TrialAttrs.set_on(live, status="failed", reason="RuntimeError: out of memory")
    study.tell(live, state=TrialState.FAIL)
    retry = TrialConfig.from_config(searcher.suggest("t1"))
    assert json.loads(retry.arch)["placements"] == []
    assert searcher.suggest("t2") is None and searcher.suggest("t3") is None  # no arch trained meanwhile
    assert len(study.trials) == 2


def test_a_vanilla_trial_without_a_checkpoint_is_not_trained_again(tmp_path):
    searcher, study = _inherit_searcher(tmp_path)
    searcher.suggest("t0")
    study.tell(searcher.live.pop("t0").trial, [0.5, 1.0])  # complete, but its checkpoint was never recorded
    assert searcher.suggest("t1") == Searcher.FINISHED and "recorded no checkpoint" in searcher.too_tight
    assert len(study.trials) == 1


def test_an_interrupted_retraining_runs_again_as_a_retraining(tmp_path):
    space = load_space(str(_space(tmp_path)))
    study = optuna.create_study(directions=space.directions)
    study.enqueue_trial({"p14": "none", "p17": "none"}, user_attrs={"evaluation": "scratch", "retrain_of": 7})
    trial = study.ask()
    record_interrupted(study, [trial.number])
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs == {"evaluation": "scratch", "retrain_of": 7}


def test_the_picks_are_kept_whatever_retrainings_finished(tmp_path):
    """Picked once: a retraining that finished does not change what a resume retrains, and nothing is enqueued
    twice or left waiting."""
    from nas_attn.search.strategies import enqueue_retraining

    space = load_space(str(_space(tmp_path, "strategy: {name: oneshot, retrain_top_k: 2}")))
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    encoding = make_encoding(space)
    seen = set()
    while len(seen) < 6:  # six distinct archs, one predicted front (accuracy up with FLOPs)
        trial, arch = encoding.ask(study)
        if arch.to_json() in seen:
            study.tell(trial, state=TrialState.FAIL)
            continue
        seen.add(arch.to_json())
        TrialAttrs.set_on(trial, arch=arch.to_json(), evaluation="oneshot")
        study.tell(trial, [0.1 * len(seen), 1e6 * len(seen)])
    picks = enqueue_retraining(space, study)
    assert len(picks) == 2
    retrain, arch = encoding.ask(study)  # the first enqueued retraining, trained and complete
    assert retrain.user_attrs["retrain_of"] == picks[0] and retrain.user_attrs["evaluation"] == "scratch"
    TrialAttrs.set_on(retrain, arch=arch.to_json())  # as the searcher records it
    study.tell(retrain, [0.05, 1e6])
    assert enqueue_retraining(space, study) == picks  # the same picks, though one arch is now trained
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    assert [t.user_attrs["retrain_of"] for t in waiting] == [picks[1]]

    # a resume with a larger budget adds a prediction that dominates everything: it is picked too, the kept
    # picks stay, and no arch already picked is picked again
    while True:
        trial, arch = encoding.ask(study)
        if trial.number not in picks and arch.to_json() not in seen:
            break
        study.tell(trial, state=TrialState.FAIL)
    TrialAttrs.set_on(trial, arch=arch.to_json(), evaluation="oneshot")
    study.tell(trial, [0.99, 1.0])
    more = enqueue_retraining(space, study)
    assert more[:2] == picks and trial.number in more[2:]
    archs = [study.trials[n].user_attrs["arch"] for n in more]
    assert len(archs) == len(set(archs))
    study.set_user_attr("retrain_picks", "damaged")  # picked again from the predictions, nothing enqueued twice
    again = enqueue_retraining(space, study)
    retrain_of = [t.user_attrs.get("retrain_of") for t in study.get_trials(deepcopy=False)]
    assert set(again) <= set(retrain_of) and all(retrain_of.count(n) == 1 for n in again)


# -- end to end: each strategy, killed in each phase, resumed -----------------------------------------------------

E2E = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 400, val_subset: 200, test_subset: 200}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
sampler: {name: random, seed: 0}
budget: {trials: TRIALS, concurrency: 1}
resources: {cpu: 1, gpu: 0}
train: {epochs: 2, batch_size: 32, lr: 0.05, bn_recalibration: 256}
strategy: STRATEGY
"""


def _start(space, results, log):
    return subprocess.Popen([sys.executable, str(REPO / "search.py"), "--space", str(space), "--results-dir",
                             str(results), "--run-id", "r1"], stdout=log, stderr=subprocess.STDOUT, env=env(),
                            cwd=REPO, start_new_session=True)


def _study(run, name):
    try:
        return load_study(run, name)
    except Exception:  # not created yet
        return None


def _kill_when(p, run, name, condition, log_path, timeout=400):
    """kill -9 the search (its whole group) once ``condition(study)`` holds; the study as it was then."""
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        study = _study(run, name)
        if study is not None and condition(study):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return load_study(run, name)
        time.sleep(0.3)
    os.killpg(p.pid, signal.SIGKILL)
    raise AssertionError(f"the condition never held: {log_path.read_text()[-3000:]}")


def _complete(study, keep=lambda a: True):
    return {t.number: (t.values, t.user_attrs["arch"]) for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and keep(TrialAttrs.of(t, history=False))}


def _predictions(a):
    return a.evaluation in ("inherit", "oneshot")


def _retrains(a):
    return a.retrain_of is not None


def _kill_and_resume(tmp_path, space, name, conditions):
    """Start the search, kill -9 it when each condition holds in turn (starting it again after each kill, as a
    resume), then let the last start finish; returns the run folder and every completed trial seen at a kill."""
    results, run = tmp_path / "results", tmp_path / "results" / name / "r1"
    kept = {}
    for i, condition in enumerate(conditions):
        log_path = tmp_path / f"attempt{i}.log"
        with open(log_path, "w") as log:
            p = _start(space, results, log)
            study = _kill_when(p, run, name, condition, log_path)
        kept.update(_complete(study))
    r = search("--space", space, "--results-dir", results, "--run-id", "r1", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study = load_study(run, name)
    for number, (values, arch) in kept.items():  # nothing completed before a kill was done again or changed
        t = study.trials[number]
        assert t.state == TrialState.COMPLETE and t.values == values and t.user_attrs["arch"] == arch
    return run, study, r.stdout


def _check_recorded(run, study, strategy, trials, top_k):
    """What every strategy run leaves: predictions, their retraining, a trained-only front, the manifest."""
    assert not [t.number for t in study.trials if t.state == TrialState.WAITING]  # nothing enqueued and left
    attrs = {t.number: TrialAttrs.of(t, history=False) for t in study.trials if t.state == TrialState.COMPLETE}
    predicted = {n for n, a in attrs.items() if _predictions(a)}
    retrained = {n: a.retrain_of for n, a in attrs.items() if _retrains(a)}
    assert len(retrained) == top_k and set(retrained.values()) <= predicted
    assert len(set(retrained.values())) == top_k  # each prediction retrained once, whatever the kills
    assert all(attrs[n].evaluation == "scratch" and attrs[n].epochs_run == 2 for n in retrained)
    front = pd.read_csv(run / "front.csv")
    assert len(front) and not set(front["trial"]) & predicted  # trained figures only
    table = pd.read_csv(run / "predictions.csv")
    assert sorted(table["trial"]) == sorted(retrained) and (table["evaluation"] == strategy).all()
    for _, row in table.iterrows():
        assert row["predicted_val_acc"] == attrs[row["retrain_of"]].val_acc_final
        assert row["val_acc"] == attrs[row["trial"]].val_acc_final
    agreement = json.loads((run / "predictions.json").read_text())
    assert agreement["n"] == top_k
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["strategy"]["name"] == strategy and manifest["status"] == "finished"
    trials_table = pd.read_parquet(run / "trials.parquet")
    finished = trials_table[trials_table["status"].isin(["complete", "failed"])]
    assert (finished["retrain_of"].isna()).sum() == trials  # the prediction budget, interrupted ones run again
    return attrs, predicted


@pytest.mark.slow
def test_inherit_end_to_end_killed_in_each_phase(tmp_path):
    name = "inheriting"
    space = write_space(tmp_path / f"{name}.yaml", textwrap.dedent(E2E.replace("TRIALS", "5").replace(
        "STRATEGY", "{name: inherit, inherit_epochs: 1, retrain_top_k: 2}")))
    conditions = [
        lambda s: any(t.state == TrialState.RUNNING for t in s.trials),  # the vanilla trial training
        lambda s: len(_complete(s, _predictions)) >= 1,  # fine-tuning
        lambda s: len(_complete(s, _retrains)) >= 1,  # retraining
    ]
    run, study, out = _kill_and_resume(tmp_path, space, name, conditions)
    attrs, predicted = _check_recorded(run, study, "inherit", 5, 2)
    vanilla = [n for n, a in attrs.items() if a.evaluation == "scratch" and a.retrain_of is None]
    assert len(vanilla) == 1 and json.loads(attrs[vanilla[0]].arch)["placements"] == []
    assert attrs[vanilla[0]].epochs_run == 2
    assert len(predicted) == 4 and all(attrs[n].epochs_run == 1 for n in predicted)  # fine-tuned 1 epoch
    # every fine-tuned trial started after the vanilla trial completed (its number is lower)
    assert all(n > vanilla[0] for n in predicted)


@pytest.mark.slow
def test_oneshot_end_to_end_killed_in_each_phase(tmp_path):
    name = "oneshotting"
    space = write_space(tmp_path / f"{name}.yaml", textwrap.dedent(E2E.replace("TRIALS", "3").replace(
        "STRATEGY", "{name: oneshot, supernet_epochs: 4, scored: 10, retrain_top_k: 2, score_batch: 2, "
                    "bn_images: 128}")))
    conditions = [
        lambda s: 1 <= (s.user_attrs.get("supernet") or {}).get("epoch", 0) < 4,  # the supernet training
        lambda s: len(_complete(s, _predictions)) >= 2,  # scoring
        lambda s: len(_complete(s, _retrains)) >= 1,  # retraining
    ]
    run, study, out = _kill_and_resume(tmp_path, space, name, conditions)
    attrs, predicted = _check_recorded(run, study, "oneshot", 10, 2)
    assert len(predicted) == 10 and all(attrs[n].epochs_run == 0 for n in predicted)
    assert "oneshot: training the supernet for 4 epoch(s), from its epoch" in (tmp_path / "attempt1.log").read_text()
    supernet = study.user_attrs["supernet"]
    assert supernet["epoch"] == supernet["epochs"] == 4


def test_a_compressed_recipe_keeps_its_schedule_in_proportion():
    from nas_attn.recipe import Recipe

    r = Recipe(epochs=90, schedule="multistep", milestones=(30, 60), warmup_epochs=5.0, step_epochs=30)
    c = r.compressed(9)
    assert (c.epochs, c.milestones, c.warmup_epochs, c.step_epochs) == (9, (3, 6), 0.5, 3)
    tiny = r.compressed(1)  # milestones kept distinct and inside the run, a step at least an epoch
    assert (tiny.milestones, tiny.step_epochs) == ((1,), 1)
    longer = Recipe(epochs=2, schedule="onecycle").compressed(6)  # a supernet: three trainings long
    assert longer.epochs == 6 and longer.schedule == "onecycle" and longer.lr == r.lr
