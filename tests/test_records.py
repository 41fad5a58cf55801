"""The records a run folder keeps (a trial's user attributes, ``manifest.json``, ``front_eval.json``): the
committed example run loads through them, older and newer files are tolerated, and every attempt ends with
its status and counts (one killed without notice included)."""

import json
import shutil
import textwrap

import optuna
import pandas as pd
import pytest
from searchutil import REPO, TINY_SPACE, write_space

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError
from nas_attn.records import FrontEval, TrialAttrs
from nas_attn.results import load_front_eval, open_run_study, save_front_eval, trials_table
from nas_attn.runfolder import RunFolder, read_manifest
from nas_attn.storage import open_journal

EXAMPLE = REPO / "results" / "examples" / "mobilenetv2_ulsam-cpu-budget"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_committed_example_run_loads_through_the_records():
    manifest = RunFolder(EXAMPLE, True).read_manifest()
    assert manifest.space == "mobilenetv2_ulsam" and manifest.objective_names == ["val_acc", "flops"]
    assert manifest.dataset.name == "fashion_mnist" and manifest.dataset.train == 4000
    assert manifest.dataset.stored_side == 32 and manifest.recipe["epochs"] == 2
    (attempt,) = manifest.attempts
    assert attempt.counts == {"complete": 8} and attempt.ended and attempt.search_s == 504.0
    assert attempt.status is None and not attempt.open  # written before attempts had a status: ended, not open
    assert manifest.ran_trials

    evals = load_front_eval(EXAMPLE)
    assert sorted(evals) == [1, 4, 6] and evals[1] == FrontEval(test_acc=0.8155, test_top5=0.9935)

    study = open_run_study(EXAMPLE, manifest)
    attrs = {t.number: TrialAttrs.of(t) for t in study.trials}
    assert len(attrs) == 8 and {a.status for a in attrs.values()} == {"complete"}
    for a in attrs.values():
        assert Arch.from_json(a.arch) and a.flops > 0 and a.epochs_run == len(a.history) == 2
        assert a.val_acc_final == a.history[-1].val_acc and a.checkpoint
    assert not Arch.from_json(attrs[0].arch).placements  # the vanilla backbone: enqueued first

    table = trials_table(study, evals)
    committed = pd.read_parquet(EXAMPLE / "trials.parquet")
    columns = ["trial", "status", "arch", "flops", "params", "val_acc_final", "test_acc", "epochs_run", "vanilla"]
    pd.testing.assert_frame_equal(table[columns], committed[columns], check_dtype=False)


def test_manifests_keep_unknown_keys_and_tolerate_missing_ones(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"space": "s", "from_a_newer_version": {"x": 1},
                                "attempts": [{"started": "a", "future": True}]}))
    manifest = read_manifest(path)
    assert manifest.dataset is None and manifest.objective_names == ["val_acc", "flops"]
    assert manifest.attempts[0].open and not manifest.ran_trials
    again = json.loads(manifest.to_json())
    assert again["from_a_newer_version"] == {"x": 1} and again["attempts"][0]["future"] is True


@pytest.mark.parametrize("text,message", [
    ("[1]", "manifest.json: not a JSON object"),
    ("{oops", "manifest.json: malformed JSON"),
    ('{"attempts": [{"counts": {"complete": "4"}}]}', "manifest.json: attempts.0.counts.complete: Input should be"),
    ('{"dataset": {"stored_side": "32"}}', "manifest.json: dataset.stored_side: Input should be a valid integer"),
])
def test_a_damaged_manifest_is_one_line(tmp_path, text, message):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(NasAttnError, match=message):
        read_manifest(path)


def test_trial_attributes_are_written_by_name_and_read_back_typed():
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    TrialAttrs.set_on(trial, arch=Arch("mobilenetv2").to_json(), flops=10, status="complete")
    with pytest.raises(TypeError, match="not trial attributes: vanila"):
        TrialAttrs.set_on(trial, vanila=True)
    study.tell(trial, [0.5, 10])
    attrs = TrialAttrs.of(study.trials[0])
    assert (attrs.flops, attrs.status, attrs.checkpoint, attrs.history) == (10, "complete", None, ())


def test_front_eval_is_written_and_read_back(tmp_path):
    evals = {3: FrontEval(test_acc=0.5), 1: FrontEval().updated(test_acc=0.25, test_top5=0.75)}
    evals[3] = evals[3].updated(reeval={"seeds": 2, "val_mean": 0.5, "val_std": 0.0, "test_mean": 0.5,
                                        "test_std": 0.1})
    save_front_eval(tmp_path, evals)
    assert json.loads((tmp_path / "front_eval.json").read_text())["1"] == {"test_acc": 0.25, "test_top5": 0.75}
    assert load_front_eval(tmp_path) == evals


SMALL = TINY_SPACE.replace("budget:", "objectives: [val_acc, flops, params]\nbudget:")


def test_an_attempt_killed_without_notice_is_closed_by_the_next_with_the_counts_it_left(tmp_path):
    """An attempt stopped by SIGKILL stays open in the manifest; the next attempt closes it as ``killed`` with
    the study's counts as it left them, and ends with its own status and counts (here: failed, on a study
    with other objectives than the space's; the driver's own path, no Ray)."""
    from nas_attn.plan import DatasetInfo, SearchOptions, make_plan
    from nas_attn.runfolder import resolve_run_folder
    from nas_attn.search import data_handle, load_search_data, process_settings, run_attempt
    from nas_attn.space import load_space
    from nas_attn.stopping import StopRequest
    from nas_attn.storage import RunLock

    space_file = write_space(tmp_path / "s.yaml", textwrap.dedent(SMALL))
    run = tmp_path / "results" / "s" / "r1"
    run.mkdir(parents=True)
    study = optuna.create_study(study_name="s", storage=open_journal(run / "optuna.journal"),
                                directions=["maximize", "minimize"])  # two objectives; the space has three
    for flops in (10, 20):
        trial = study.ask()
        TrialAttrs.set_on(trial, arch=Arch("mobilenetv2").to_json(), flops=flops, status="complete")
        study.tell(trial, [0.5, flops])
    study.ask()  # running when the search was killed
    (run / "manifest.json").write_text(json.dumps({"space": "s", "study_name": "s", "status": "running",
                                                   "attempts": [{"started": "a", "ended": None}]}))
    options = SearchOptions.from_flags(space=str(space_file), results_dir=str(tmp_path / "results"), run_id="r1",
                                       quiet=True)
    space = load_space(options.space)
    ds = load_search_data(options, space)
    plan = make_plan(options, space, resolve_run_folder(options.results_dir, "s", "r1", False),
                     DatasetInfo(ds.name, ds.source, ds.num_classes, ds.in_chans), {"CPU": 1.0})
    with RunLock(run), process_settings() as settings, \
            pytest.raises(NasAttnError, match="has other objectives than val_acc, flops, params"):
        run_attempt(plan, data_handle(ds, plan.space, options), lambda _: None, StopRequest(), settings)
    killed, failed = read_manifest(run / "manifest.json").attempts
    assert (killed.status, killed.counts, killed.ended) == ("killed", {"complete": 2}, None)
    assert (failed.status, failed.counts) == ("failed", {"complete": 2}) and failed.ended
    assert "has other objectives" in failed.reason


def test_the_example_run_copied_resumes_with_its_records(tmp_path):
    """The resume checks read the copied example's manifest, journal and front_eval.json through the records."""
    from nas_attn.plan import SearchOptions
    from nas_attn.search import check_run_files
    from nas_attn.space import load_space

    run = tmp_path / "results" / "mobilenetv2_ulsam" / "r1"
    shutil.copytree(EXAMPLE, run)
    space = shutil.copy(EXAMPLE / "space.yaml", tmp_path / "mobilenetv2_ulsam.yaml")
    check_run_files(RunFolder(run, True), load_space(str(space)), SearchOptions.from_flags(space=str(space)))
    (run / "optuna.journal").unlink()
    with pytest.raises(NasAttnError, match="missing or empty, but r1 already ran trials"):
        check_run_files(RunFolder(run, True), load_space(str(space)), SearchOptions.from_flags(space=str(space)))


def test_the_front_table_prints_enough_digits_to_tell_its_points_apart():
    """Vanilla at 15,320,100 FLOPs and a placement at 15,324,900 both printed as "15.32" looked dominated."""
    import pandas as pd

    from nas_attn.results import format_front, mflops_digits

    front = pd.DataFrame({"trial": [0, 1], "val_acc_final": [0.70, 0.75], "test_acc": [0.69, float("nan")],
                          "flops": [15_320_100, 15_324_900], "params": [1000, 1100], "placements": ["-", "17:ulsam"]})
    table = format_front(front)
    assert "15.320" in table and "15.325" in table and "15.32 " not in table
    assert mflops_digits([23_990_000, 23_580_000]) == 2  # as before where two decimals tell them apart
    assert mflops_digits([1, 2]) == 6 and mflops_digits([5e6]) == 2
