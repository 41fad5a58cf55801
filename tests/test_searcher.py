"""StudySearcher's bookkeeping, driven directly through Ray Tune's searcher hooks (no Ray cluster needed):
constraints, states, history, checkpoints, tracebacks."""

import textwrap

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas_attn import Arch, complexity
from nas_attn.records import EpochStats, TrialConfig, TrialReport
from nas_attn.results import trials_table
from nas_attn.runfolder import RunFolder
from nas_attn.searcher import StudySearcher
from nas_attn.space import RunSettings, load_space
from nas_attn.space.encoding import make_encoding
from nas_attn.study import make_sampler

SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
constraints: {max_flops: MAXF}
sampler: {name: SAMPLER, seed: 0}
"""


def _searcher(tmp_path, max_flops, sampler="random"):
    path = tmp_path / "constrained.yaml"
    path.write_text(textwrap.dedent(SPACE.replace("MAXF", str(max_flops)).replace("SAMPLER", sampler)))
    space = load_space(str(path)).for_run(RunSettings(), cpu_budget=False, num_classes=10, in_chans=1)
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 0))
    run = RunFolder(tmp_path / "run", False)
    return StudySearcher(study, make_encoding(space), cost=complexity, run=run, seed_base=100, epochs=2), space


def _epoch(n, acc):
    return EpochStats(n, 2.0, 0.3, 2.1, acc, 0.1, 1.0, 100.0)


def test_archs_over_max_flops_are_told_with_their_violation_and_never_trained(tmp_path):
    searcher, space = _searcher(tmp_path, 14.5e6)  # vanilla is 15.3 MFLOPs; substituting layers saves some
    configs = [TrialConfig.from_config(searcher.suggest(f"t{i}")) for i in range(6)]
    for c in configs:
        assert complexity(Arch.from_json(c.arch)) == {"params": c.params, "flops": c.flops}  # computed once, handed over
        assert c.flops <= 14.5e6 and c.seed == 100 + c.trial_number  # only feasible archs reach Tune
    refused = [t for t in searcher.study.trials if t.user_attrs.get("status") == "infeasible"]
    assert refused
    for t in refused:  # told complete with the worst accuracy and a positive violation: the sampler learns
        assert t.state == TrialState.COMPLETE and t.values[0] == 0.0 and "> max_flops 14.50M" in t.user_attrs["reason"]
        assert t.constraints["max_flops"] > 0
    table = trials_table(searcher.study)
    assert set(table["status"]) == {"infeasible"} and (table["flops"] > 14.5e6).all()


def test_nsga2_gets_the_constraints(tmp_path):
    searcher, _ = _searcher(tmp_path, 14.5e6, sampler="nsga2")
    for i in range(4):
        searcher.suggest(f"t{i}")
    told = [t for t in searcher.study.trials if t.state == TrialState.COMPLETE]
    assert told and all("max_flops" in t.constraints for t in told)  # what NSGA-II's constrained domination reads


def test_impossible_constraints_end_the_search_with_a_reason(tmp_path):
    searcher, _ = _searcher(tmp_path, 1)
    assert searcher.suggest("t0") == Searcher.FINISHED
    assert "consecutive sampled archs broke the constraints" in searcher.too_tight


def test_complete_pruned_failed_and_lost_trials_reach_optuna_as_such(tmp_path):
    searcher, _ = _searcher(tmp_path, 1e9)
    ids = ["done", "stopped", "broken", "lost"]
    for i in ids:
        searcher.suggest(i)
    for i in ids:
        searcher.on_trial_result(i, TrialReport(epoch=_epoch(1, 0.4)).to_result())
    searcher.on_trial_result("done", TrialReport(epoch=_epoch(2, 0.6)).to_result())
    searcher.record_restart("done")
    searcher.on_trial_result("done", TrialReport(epoch=_epoch(1, 0.5)).to_result())  # a retry restarts at epoch 1…
    final = TrialReport(epoch=_epoch(2, 0.7), completed=True, node_id="n1", train_s=3.0)
    searcher.record_checkpoint("done", _LocalCheckpoint(tmp_path / "run" / "tune" / "x" / "checkpoint_000000"))
    # with ASHA, Tune does not send the last result to on_trial_result: on_trial_complete carries it
    searcher.on_trial_complete("done", final.to_result())
    searcher.on_trial_complete("stopped", TrialReport(epoch=_epoch(1, 0.4)).to_result())  # ASHA stop
    failure = TrialReport(failed=True, reason="non-finite training loss at epoch 1", traceback="Traceback…\nTrialFailed")
    searcher.on_trial_complete("broken", failure.to_result())
    searcher.on_trial_complete("lost", None, error=True)
    by_id = {t.user_attrs["tune_trial_id"]: t for t in searcher.study.trials}
    done = by_id["done"]
    assert done.state == TrialState.COMPLETE and done.values == [0.7, done.user_attrs["flops"]]
    assert [h["val_acc"] for h in done.user_attrs["history"]] == [0.5, 0.7] and done.user_attrs["node_id"] == "n1"
    assert done.user_attrs["val_acc_best"] == 0.7 and done.user_attrs["epochs_run"] == 2
    assert done.user_attrs["restarts"] == 1 and done.user_attrs["checkpoint"] == "tune/x/checkpoint_000000"
    assert by_id["stopped"].state == TrialState.PRUNED and "ASHA after 1 of 2" in by_id["stopped"].user_attrs["reason"]
    broken = by_id["broken"]
    assert broken.state == TrialState.FAIL and broken.user_attrs["reason"].startswith("non-finite")
    assert (tmp_path / "run" / broken.user_attrs["traceback"]).read_text() == "Traceback…\nTrialFailed"
    lost = by_id["lost"]
    assert lost.state == TrialState.FAIL and "worker failed" in lost.user_attrs["reason"]
    searcher.keep_worker_error(lost.number, "RayActorError: the actor died")  # Tune's callback comes next
    assert "actor died" in (tmp_path / "run" / lost.user_attrs["traceback"]).read_text()
    assert set(trials_table(searcher.study)["status"]) == {"complete", "pruned", "failed"}


class _LocalCheckpoint:
    """What Tune hands ``Callback.on_checkpoint``: a path on a pyarrow file system."""

    def __init__(self, path):
        import pyarrow.fs

        self.path, self.filesystem = str(path), pyarrow.fs.LocalFileSystem()


@pytest.mark.parametrize("report", [TrialReport(), TrialReport(epoch=_epoch(3, 0.9), completed=True, node="n"),
                                    TrialReport(failed=True, reason="r", traceback="t", device="cpu x1")])
def test_trial_report_round_trips_through_a_tune_result(report):
    result = {**report.to_result(), "trial_id": "abc", "training_iteration": 3, "done": False}  # Tune adds keys
    assert TrialReport.from_result(result) == report


def test_latency_objective_is_the_trials_measurement_and_unmeasured_archs_are_worst(tmp_path):
    path = tmp_path / "latency.yaml"
    path.write_text(textwrap.dedent(SPACE.replace("MAXF", str(14.5e6)).replace("SAMPLER", "random"))
                    + "objectives: [val_acc, flops, latency_ms]\n")
    space = load_space(str(path)).for_run(RunSettings(), cpu_budget=False, num_classes=10, in_chans=1)
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 0))
    searcher = StudySearcher(study, make_encoding(space), cost=complexity, run=RunFolder(tmp_path / "run", False),
                             seed_base=0, epochs=2)
    searcher.suggest("t0")
    final = TrialReport(epoch=_epoch(2, 0.6), completed=True, latency_ms=3.25)
    searcher.on_trial_complete("t0", final.to_result())
    done = next(t for t in study.trials if t.user_attrs.get("tune_trial_id") == "t0" and t.state == TrialState.COMPLETE
                and t.user_attrs.get("status") == "complete")
    assert done.values == [0.6, done.user_attrs["flops"], 3.25] and done.user_attrs["latency_ms"] == 3.25
    refused = [t for t in study.trials if t.user_attrs.get("status") == "infeasible"]
    assert refused and all(t.values[2] == float("inf") for t in refused)


def test_measured_latency_tells_a_heavy_model_from_a_light_one():
    import torch

    from nas_attn.latency import measure_latency_ms

    light = torch.nn.Conv2d(3, 8, 1)
    heavy = torch.nn.Sequential(*[torch.nn.Conv2d(64 if i else 3, 64, 3, padding=1) for i in range(6)])
    fast, slow = (measure_latency_ms(m, (1, 3, 64, 64), "cpu", min_run_time=0.2) for m in (light, heavy))
    assert 0 < fast < slow


def test_without_constraints_the_trial_counts_the_cost_and_the_searcher_records_it(tmp_path):
    """A space without constraints: nothing is counted before training (the driver stays torch-free); the cost
    a trial reports is recorded and told, also for a trial that fails after counting it (issue 23)."""
    path = tmp_path / "free.yaml"
    path.write_text(textwrap.dedent(SPACE.replace("constraints: {max_flops: MAXF}\n", "").replace("SAMPLER",
                                                                                                  "random")))
    space = load_space(str(path)).for_run(RunSettings(), cpu_budget=False, num_classes=10, in_chans=1)
    assert not space.counts_before_training
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 0))
    searcher = StudySearcher(study, make_encoding(space), cost=None, run=RunFolder(tmp_path / "run", False),
                             seed_base=100, epochs=2)
    ids = ["done", "broken", "silent"]
    configs = {i: TrialConfig.from_config(searcher.suggest(i)) for i in ids}
    assert all(c.params is None and c.flops is None for c in configs.values())
    costs = {i: complexity(Arch.from_json(c.arch)) for i, c in configs.items()}  # what each trial counts
    searcher.on_trial_result("done", TrialReport(epoch=_epoch(1, 0.4), **costs["done"]).to_result())
    searcher.on_trial_complete("done", TrialReport(epoch=_epoch(2, 0.6), completed=True,
                                                   **costs["done"]).to_result())
    searcher.on_trial_complete("broken", TrialReport(failed=True, reason="out of memory", **costs["broken"])
                               .to_result())
    searcher.on_trial_complete("silent", TrialReport(epoch=_epoch(2, 0.6), completed=True).to_result())
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    done = by_id["done"]
    assert done.state == TrialState.COMPLETE and done.values == [0.6, costs["done"]["flops"]]
    assert (done.user_attrs["params"], done.user_attrs["flops"]) == (costs["done"]["params"], costs["done"]["flops"])
    assert by_id["broken"].state == TrialState.FAIL and by_id["broken"].user_attrs["flops"] == costs["broken"]["flops"]
    silent = by_id["silent"]  # complete, but without the cost its objectives cannot be told
    assert silent.state == TrialState.FAIL and "reported no params or FLOPs" in silent.user_attrs["reason"]
    table = trials_table(study).set_index("trial")
    assert table.loc[done.number, "flops"] == costs["done"]["flops"]
