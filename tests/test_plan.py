"""The plan a search runs, decided from the space, the flags and the cluster Ray found: the CPU budget without a
GPU, the full budget with one (or with --full-budget), and flags over both."""

import pytest

from nas_attn.errors import NasAttnError
from nas_attn.plan import DatasetInfo, SearchOptions, make_plan
from nas_attn.runfolder import RunFolder
from nas_attn.space import load_space

DATA = DatasetInfo("fashion_mnist", "bundled", 10, 1)


def _plan(tmp_path, cluster, **flags):
    options = SearchOptions.from_flags(space="mobilenetv2_ulsam", **flags)
    return make_plan(options, load_space("mobilenetv2_ulsam"), RunFolder(tmp_path / "run", False), DATA, cluster)


def test_a_gpu_runs_the_full_budget_packed_by_the_spaces_gpu_share(tmp_path):
    space = load_space("mobilenetv2_ulsam")
    plan = _plan(tmp_path, {"CPU": 16.0, "GPU": 1.0})
    assert not plan.space.cpu_budget_applied and plan.budget_note is None
    assert plan.space.trials == space.trials and plan.space.base.width == space.base.width
    assert plan.resources.gpus_per_trial == space.gpus_per_trial > 0
    assert plan.resources.concurrency == int(1 / space.gpus_per_trial)


def test_no_gpu_runs_the_cpu_budget_and_says_so(tmp_path):
    space = load_space("mobilenetv2_ulsam")
    plan = _plan(tmp_path, {"CPU": 2.0})
    assert plan.space.cpu_budget_applied and plan.budget_note
    assert plan.space.trials == space.file.cpu_budget.trials < space.trials
    assert plan.resources.gpus_per_trial == 0 and plan.space.base.width == space.file.cpu_budget.width


def test_full_budget_flag_on_a_cpu_runs_the_full_budget_without_gpus(tmp_path):
    space = load_space("mobilenetv2_ulsam")
    plan = _plan(tmp_path, {"CPU": 2.0}, full_budget=True)
    assert not plan.space.cpu_budget_applied and plan.space.trials == space.trials
    assert plan.resources.gpus_per_trial == 0


@pytest.mark.parametrize("cluster", [{"CPU": 2.0}, {"CPU": 16.0, "GPU": 1.0}])
def test_flags_win_over_either_budget(tmp_path, cluster):
    plan = _plan(tmp_path, cluster, trials=3, epochs=2, concurrency=1)
    assert (plan.space.trials, plan.space.recipe.epochs, plan.resources.concurrency) == (3, 2, 1)


def test_per_trial_cpus_beyond_a_local_ray_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray, the only kind checked
    with pytest.raises(NasAttnError, match="--cpus-per-trial 4: more CPUs per trial than this machine has"):
        _plan(tmp_path, {"CPU": 2.0}, cpus_per_trial=4)
    assert not (tmp_path / "run").exists()
