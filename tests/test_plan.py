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


@pytest.mark.parametrize("cluster,recorded,applied", [({"CPU": 2.0}, False, False), ({"CPU": 16.0, "GPU": 1.0}, True, True)])
def test_a_resume_keeps_the_budget_its_run_started_with_on_any_machine(tmp_path, cluster, recorded, applied):
    options = SearchOptions.from_flags(space="mobilenetv2_ulsam")
    plan = make_plan(options, load_space("mobilenetv2_ulsam"), RunFolder(tmp_path / "run", True), DATA, cluster,
                     cpu_budget=recorded)
    assert plan.space.cpu_budget_applied is applied
    assert (plan.budget_note or "").startswith("resumed as the run started: using the space's cpu_budget") is applied


def test_the_budget_note_leaves_out_what_flags_set(tmp_path):
    plan = _plan(tmp_path, {"CPU": 2.0}, epochs=2)
    assert "epochs 1" not in plan.budget_note and "flags set epochs" in plan.budget_note
    assert plan.budget_note.startswith("no GPU: using the space's cpu_budget (trials 8, ")


@pytest.mark.parametrize("flags,message", [
    ({"epochs": 3}, r"^--epochs 3: run r trains 1 epochs a trial; a resume keeps them"),
    ({"seed": 7}, r"^--seed 7: run r started with seed 0 \(its split and its trials' seeds\); a resume keeps it"),
])
def test_a_resume_that_would_train_otherwise_is_refused(tmp_path, flags, message):
    from nas_attn.checks import check_resume_flags
    from nas_attn.records import DatasetRecord, Manifest

    manifest = Manifest(budget={"epochs": 1, "cpu_budget_applied": True}, dataset=DatasetRecord(seed=0))
    run = RunFolder(tmp_path / "r", True)
    check_resume_flags(SearchOptions.from_flags(space="smoke", epochs=1, seed=0), run, manifest)  # the same: fine
    with pytest.raises(NasAttnError, match=message):
        check_resume_flags(SearchOptions.from_flags(space="smoke", **flags), run, manifest)
