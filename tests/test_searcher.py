"""NasOptunaSearch's bookkeeping, driven directly (no Ray cluster needed): constraints, states, history."""

import textwrap

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas_attn import Arch, complexity
from nas_attn.results import trials_table
from nas_attn.searcher import NasOptunaSearch
from nas_attn.space import load_space

SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
constraints: {max_flops: MAXF}
sampler: {name: random, seed: 0}
"""


def _searcher(tmp_path, max_flops):
    path = tmp_path / "constrained.yaml"
    path.write_text(textwrap.dedent(SPACE.replace("MAXF", str(max_flops))))
    space = load_space(str(path))
    return NasOptunaSearch(space, sampler=optuna.samplers.RandomSampler(seed=0),
                           storage=optuna.storages.InMemoryStorage(), study_name="c", seed_base=100,
                           checkpoint_root="tune/attempt-1", epochs=2), space


def test_archs_over_max_flops_are_refused_before_training(tmp_path):
    searcher, space = _searcher(tmp_path, 14.5e6)  # vanilla is 15.3 MFLOPs; substituting layers saves some
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    for c in configs:
        assert complexity(Arch.from_json(c["arch"]))["flops"] <= 14.5e6  # only feasible archs reach Tune
        assert c["seed"] == 100 + c["trial_number"]
    refused = [t for t in searcher.study.trials if t.user_attrs.get("status") == "infeasible"]
    assert refused and all(t.state == TrialState.FAIL and "> max_flops 14.50M" in t.user_attrs["reason"]
                           for t in refused)
    table = trials_table(searcher.study)
    assert set(table["status"]) == {"infeasible"} and (table["flops"] > 14.5e6).all()


def test_impossible_constraints_end_the_search_with_a_reason(tmp_path):
    searcher, _ = _searcher(tmp_path, 1)
    assert searcher.suggest("t0") == Searcher.FINISHED
    assert "consecutive sampled archs broke the constraints" in searcher.too_tight


def test_complete_pruned_failed_and_lost_trials_reach_optuna_as_such(tmp_path):
    searcher, _ = _searcher(tmp_path, 1e9)
    ids = ["done", "stopped", "broken", "lost"]
    for i in ids:
        searcher.suggest(i)
    epoch = {"epoch": 1, "val_acc": 0.4, "train_loss": 2.0, "epoch_s": 1.0}
    for i in ids:
        searcher.on_trial_result(i, epoch)
    searcher.on_trial_result("done", {**epoch, "epoch": 2, "val_acc": 0.6})
    searcher.on_trial_result("done", {**epoch, "epoch": 1, "val_acc": 0.5})  # a retry restarts at epoch 1…
    searcher.on_trial_result("done", {**epoch, "epoch": 2, "val_acc": 0.7})  # …and its epochs replace the lost ones
    searcher.on_trial_complete("done", {"completed": True, "val_acc": 0.7, "flops": 1e7, "node_id": "n1"})
    searcher.on_trial_complete("stopped", {"completed": False, "val_acc": 0.4, "flops": 1e7})  # ASHA stop
    searcher.on_trial_complete("broken", {"failed": True, "reason": "non-finite training loss at epoch 1"})
    searcher.on_trial_complete("lost", None, error=True)
    by_id = {t.user_attrs["tune_trial_id"]: t for t in searcher.study.trials}
    done = by_id["done"]
    assert done.state == TrialState.COMPLETE and done.values == [0.7, 1e7]
    assert [h["val_acc"] for h in done.user_attrs["history"]] == [0.5, 0.7] and done.user_attrs["node_id"] == "n1"
    assert done.user_attrs["val_acc_best"] == 0.7 and done.user_attrs["epochs_run"] == 2
    assert by_id["stopped"].state == TrialState.PRUNED and "ASHA after 1 of 2" in by_id["stopped"].user_attrs["reason"]
    assert by_id["broken"].state == TrialState.FAIL and by_id["broken"].user_attrs["reason"].startswith("non-finite")
    assert by_id["lost"].state == TrialState.FAIL and "worker failed" in by_id["lost"].user_attrs["reason"]
    assert set(trials_table(searcher.study)["status"]) == {"complete", "pruned", "failed"}
