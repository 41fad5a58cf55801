"""``nas-attn train``: one arch outside a search, a trial per seed, in a run folder that every reader reads."""

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from searchutil import REPO, TINY_SPACE, env, load_study, only_run, write_space

from nas_attn import Arch
from nas_attn.errors import NasAttnError
from nas_attn.plan import SearchOptions
from nas_attn.space import load_space
from nas_attn.space.encoding import FixedEncoding, make_encoding

ULSAM_AT_17 = {"backbone": "mobilenetv2", "width": 0.35, "small_input": True,
               "placements": [{"position": 17, "module": "ulsam", "groups": 2}]}


def train(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_attn", "train", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env(), cwd=REPO)


# -- the space of a training run (torch-free, fast) -------------------------------------------------------------
def test_for_arch_keeps_the_arch_and_the_recipe_and_drops_every_choice():
    space = load_space("smoke")
    arch = Arch.from_dict({**ULSAM_AT_17, "input_size": 224, "num_classes": 1000})
    fixed = space.for_arch(arch, seeds=3)
    assert fixed.name == "train-smoke" and fixed.trials == 3 and fixed.positions == ()
    assert fixed.fixed.placements == arch.placements and fixed.fixed.width == 0.35
    assert fixed.base.input_size == 32  # the space's dataset decides the input size
    assert fixed.recipe == space.recipe and not fixed.vanilla_possible() and fixed.asha is None
    # smoke's cpu_budget narrows the data and the recipe, never the network or the number of runs
    assert fixed.file.cpu_budget.trials is None and fixed.file.cpu_budget.width is None
    assert fixed.file.cpu_budget.epochs == 1 and fixed.file.cpu_budget.train_subset == 600
    assert fixed.violation(fixed.fixed, {"flops": 10**12, "params": 10**9}).reason is None  # no constraints


def test_for_run_gives_the_fixed_arch_the_datasets_classes_and_channels():
    from nas_attn.space import RunSettings

    space = load_space("smoke").for_arch(Arch.from_dict(ULSAM_AT_17), seeds=2)
    run = space.for_run(RunSettings(), cpu_budget=True, num_classes=10, in_chans=1)
    assert (run.fixed.num_classes, run.fixed.in_chans, run.fixed.width) == (10, 1, 0.35)
    assert run.trials == 2 and run.recipe.epochs == 1 and run.train_subset == 600
    encoding = make_encoding(run)
    assert isinstance(encoding, FixedEncoding) and encoding.arch({}) == run.fixed


def test_an_arch_that_does_not_fit_the_spaces_input_size_is_refused(tmp_path):
    arch = Arch.from_dict({"backbone": "resnet18", "placements": [{"position": 1, "module": "nonlocal"}]})
    assert load_space(write_space(tmp_path / "at32.yaml", TINY_SPACE)).for_arch(arch, 1).fixed.input_size == 32
    at224 = load_space(write_space(tmp_path / "at224.yaml", TINY_SPACE.replace("input_size: 32", "input_size: 224")))
    with pytest.raises(NasAttnError, match=r"^--arch at this space's input size \(224 px\): placement 1 "
                                           r"\(1:1 nonlocal\): nonlocal at a 56x56 map has 3136 positions"):
        at224.for_arch(arch, 1)


def test_every_paper_row_with_an_arch_is_trainable_at_32_px():
    """What `nas-attn paper-tables --arch ROW_ID` prints is what --arch takes: every row whose target is an arch
    (the papers' ImageNet rows included, their input size replaced by the space's) fits a 32 px space; the
    ImageNet rows keep their stem, with a warning."""
    from nas_attn.papers.figures import FIGURES

    rows = [f for f in FIGURES if isinstance(f.target, Arch)]
    space = load_space("lgam_cifar")
    trained = [space.for_arch(Arch.from_json(json.dumps(f.target.to_dict())), 1) for f in rows]
    assert len(rows) == len(trained) == 125 and all(t.fixed.input_size == 32 for t in trained)
    # the ImageNet rows keep the ImageNet stem they name, and each is warned of at start-up
    imagenet = [t for f, t in zip(rows, trained, strict=True) if not f.target.small_input]
    assert len(imagenet) == 91 and all(not t.fixed.small_input and len(t.warnings) == 1 for t in imagenet)
    assert {t.fixed.backbone for t in trained} >= {"mobilenetv1", "mobilenetv2", "resnet18", "resnet50"}


def test_the_resume_command_of_a_training_run_is_a_train_command():
    options = SearchOptions.from_flags(space="smoke", arch="/tmp/a.json", trials=3)
    line = options.command_line("python -m nas_attn train")
    assert line == "python -m nas_attn train --space smoke --seeds 3 --arch /tmp/a.json"
    with pytest.raises(NasAttnError, match=r"^--seeds: .*greater than or equal to 1"):
        SearchOptions.from_flags(space="smoke", arch="{}", trials=0)
    assert SearchOptions.from_flags(space="smoke", arch=json.dumps(ULSAM_AT_17)).given_arch() == \
        Arch.from_dict(ULSAM_AT_17).to_json()


def test_the_printed_resume_command_parses_back_to_the_same_training(tmp_path, monkeypatch):
    """What an interrupted `nas-attn train` prints is a command the train parser takes, with every path absolute."""
    import shlex

    from nas_attn.plan import DatasetInfo, check_options_against_space, make_plan
    from nas_attn.runfolder import RunFolder
    from nas_attn.search import build_train_parser, resume_command

    monkeypatch.chdir(tmp_path)  # relative paths as a user gives them, made absolute in the command
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(json.dumps(ULSAM_AT_17))
    (tmp_path / "data").mkdir()
    options = SearchOptions.from_flags(space="smoke", arch="arch.json", trials=3, epochs=2, seed=5,
                                       data_root="data", results_dir="results")
    space = load_space("smoke").for_arch(Arch.from_json(options.arch), options.trials)
    check_options_against_space(options, space)
    run = RunFolder(tmp_path / "results" / space.name / "r1", False)
    plan = make_plan(options, space, run, DatasetInfo("fashion_mnist", "x", 10, 1), {"CPU": 2.0})
    argv = shlex.split(resume_command(plan))
    assert argv[0] == sys.executable and argv[1:4] == ["-m", "nas_attn", "train"]
    parsed = vars(build_train_parser().parse_args(argv[4:]))
    assert parsed["arch"] == str(arch_file) and parsed["trials"] == 3 and parsed["epochs"] == 2
    assert parsed["seed"] == 5 and parsed["run_id"] == "r1" and parsed["results_dir"] == str(tmp_path / "results")
    assert parsed["space"] == str(load_space("smoke").path.resolve()) and parsed["data_root"] == str(tmp_path / "data")


def test_one_network_is_one_key_however_it_is_spelled():
    """A resume compares the network, not the text: width 1 and 1.0, module options in any order, and the input
    size, channels and classes that the run's dataset sets anyway, are the same arch."""
    a = Arch.from_dict({"backbone": "mobilenetv2", "width": 1, "placements": [
        {"position": 3, "module": "ulsam", "groups": 2, "args": {"a": 1, "b": 2}}]})
    b = Arch.from_dict({"backbone": "mobilenetv2", "width": 1.0, "input_size": 32, "num_classes": 10, "in_chans": 1,
                        "placements": [{"position": 3, "module": "ulsam", "groups": 2, "args": {"b": 2, "a": 1}}]})
    assert a.network_key() == b.network_key()
    for other in ({"width": 0.5}, {"small_input": True}, {"placements": []}):
        assert Arch.from_dict({**a.to_dict(), **other}).network_key() != a.network_key(), other
    # the default variant named or not, placements listed in another order, a module's default groups given
    r50 = [{"position": 3, "module": "se"}, {"position": 1, "module": "ulsam", "groups": 2}]
    plain = Arch.from_dict({"backbone": "resnet50", "placements": r50})
    same = Arch.from_dict({"backbone": "resnet50", "variant": "v1.5", "placements": r50[::-1]})
    ulsam = Arch.from_dict({"backbone": "mobilenetv2", "placements": [{"position": 3, "module": "ulsam"}]})
    given = Arch.from_dict({"backbone": "mobilenetv2", "placements": [{"position": 3, "module": "ulsam", "groups": 4}]})
    assert plain.network_key() == same.network_key() and ulsam.network_key() == given.network_key()
    assert Arch.from_dict({**plain.to_dict(), "variant": "v1"}).network_key() != plain.network_key()


def test_an_imagenet_arch_at_a_small_spaces_size_is_trained_as_given_with_a_warning():
    space = load_space("smoke")
    assert space.base.small_input
    at_224 = space.for_arch(Arch.from_dict({**ULSAM_AT_17, "small_input": False}), 1)
    assert at_224.fixed.small_input is False  # the arch's stem, not the space's
    assert len(at_224.warnings) == 1 and at_224.warnings[0].startswith(
        "--arch names the ImageNet stem (small_input false), made for 224 px, at 32 px: trained as given")
    assert space.for_arch(Arch.from_dict(ULSAM_AT_17), 1).warnings == ()
    # at the paper's size the ImageNet stem is the right one; the small-input stem is not
    assert space.for_arch(Arch.from_dict({**ULSAM_AT_17, "small_input": False}), 1, 224).warnings == ()
    small_at_224 = space.for_arch(Arch.from_dict(ULSAM_AT_17), 1, 224).warnings
    assert len(small_at_224) == 1 and "small-input stem (small_input true), made for 64 px or less" in small_at_224[0]


def test_a_manifest_whose_arch_is_not_an_arch_is_one_line(tmp_path):
    from nas_attn.runfolder import read_manifest

    path = tmp_path / "manifest.json"
    for bad, says in (("[1]", "not an arch's JSON object"), ("{}", "missing key 'backbone'"),
                      ("arch.json", "not an arch's JSON object"), ('{"backbone": 1', "not valid JSON")):
        path.write_text(json.dumps({"space": "s", "arch": bad}))
        with pytest.raises(NasAttnError, match=rf"^{re.escape(str(path))}: arch: .*{says}"):
            read_manifest(path)
    path.write_text(json.dumps({"space": "s", "arch": json.dumps(ULSAM_AT_17)}))
    assert Arch.from_json(read_manifest(path).arch) == Arch.from_dict(ULSAM_AT_17)


def test_input_size_and_recipe_settings_replace_the_spaces():
    """`--input-size` and `--recipe KEY=VALUE` train a paper's row without a space file of its own; --recipe
    wins over the space's CPU budget as every flag does."""

    options = SearchOptions.from_flags(space="smoke", arch=json.dumps(ULSAM_AT_17), input_size=64,
                                       recipe=["lr=0.05", "schedule=multistep", "milestones=[2, 4]", "hflip=false"])
    assert options.recipe_changes() == {"lr": 0.05, "schedule": "multistep", "milestones": (2, 4), "hflip": False}
    space = load_space("smoke").for_arch(Arch.from_json(options.arch), 1, options.input_size,
                                         options.recipe_changes())
    assert space.base.input_size == space.fixed.input_size == 64
    assert space.recipe.schedule == "multistep"  # before the data is loaded: it is stored for this recipe
    run = space.for_run(options.run_settings(), cpu_budget=True, num_classes=10, in_chans=1)
    assert (run.recipe.lr, run.recipe.schedule, run.recipe.milestones, run.recipe.hflip) == (
        0.05, "multistep", (2, 4), False)
    assert run.recipe.epochs == 1 and run.train_subset == 600  # the rest of the CPU budget still applies
    line = options.command_line("nas-attn train")
    assert "--input-size 64 --recipe lr=0.05 --recipe schedule=multistep --recipe 'milestones=[2, 4]'" in line


@pytest.mark.parametrize("flags,message", [
    ({"recipe": ["lr"]}, r"^--recipe: expected KEY=VALUE, got 'lr'"),
    ({"recipe": ["epochs=3"]}, r"^--recipe: epochs: give it with --epochs"),
    ({"recipe": ["momentun=0.9"]}, r"^--recipe: unknown recipe key 'momentun' \(one of batch_size, "),
    ({"recipe": ["milestones=[1, 2"]}, r"^--recipe: milestones: not a YAML value"),
    ({"input_size": 4}, r"^--input-size: .*greater than or equal to 8"),
])
def test_bad_recipe_settings_and_sizes_are_one_line(flags, message):
    with pytest.raises(NasAttnError, match=message):
        SearchOptions.from_flags(space="smoke", arch=json.dumps(ULSAM_AT_17), **flags)


@pytest.mark.parametrize("recipe,message", [
    (["lr=-1"], r"^--recipe: lr: Input should be greater than 0"),
    (["schedule=multistep"], r"^--recipe: .*milestones: schedule multistep needs at least one milestone"),
    (["optimizer=adam"], r"^--recipe: optimizer: Input should be 'sgd' or 'adamw'"),
])
def test_recipe_values_are_checked_against_the_spaces_recipe_before_anything_runs(recipe, message):
    options = SearchOptions.from_flags(space="smoke", arch=json.dumps(ULSAM_AT_17), recipe=recipe)
    with pytest.raises(NasAttnError, match=message):
        load_space("smoke").for_arch(Arch.from_json(options.arch), 1, recipe=options.recipe_changes())


def test_a_searchs_flags_are_refused_with_an_arch():
    for flags, flag in (({"sampler": "tpe"}, "--sampler"), ({"reevaluate_front": 2}, "--reevaluate-front")):
        with pytest.raises(NasAttnError, match=rf"^{flag}: a search's flag; nas-attn train chooses nothing"):
            SearchOptions.from_flags(space="smoke", arch=json.dumps(ULSAM_AT_17), **flags)
    assert SearchOptions.from_flags(space="smoke", sampler="tpe", reevaluate_front=2).sampler == "tpe"
    for flags, flag in (({"input_size": 64}, "--input-size"), ({"recipe": ["lr=0.1"]}, "--recipe")):
        with pytest.raises(NasAttnError, match=rf"^{flag}: only with nas-attn train"):
            SearchOptions.from_flags(space="smoke", **flags)


@pytest.mark.parametrize("args,message", [
    (["--arch", "{not json"], r"^nas-attn train: error: arch: not valid JSON"),
    (["--arch", "missing.json"], r"^nas-attn train: error: arch: missing.json: no such file"),
    (["--arch", json.dumps({**ULSAM_AT_17, "placements": [{"position": 40, "module": "ulsam"}]})],
     r"^nas-attn train: error: --arch at this space's input size \(32 px\): placement 1 .*position 40 out of range"),
    (["--arch", json.dumps(ULSAM_AT_17), "--seeds", "0"], r"^nas-attn train: error: --seeds: .*greater than or equal"),
    (["--arch", json.dumps(ULSAM_AT_17), "--space", "nosuchspace"], r"^nas-attn train: error: .*nosuchspace"),
    (["--space", "smoke"], r"^nas-attn train: error: the following arguments are required: --arch"),
    (["--arch", json.dumps(ULSAM_AT_17), "--trials", "2"], r"^nas-attn train: error: unrecognized arguments: --trials"),
    (["--arch", json.dumps(ULSAM_AT_17), "--recipe", "lr=fast"], r"^nas-attn train: error: --recipe: lr: "),
    (["--arch", json.dumps({"backbone": "resnet18", "placements": [{"position": 1, "module": "nonlocal"}]}),
      "--input-size", "224"], r"^nas-attn train: error: --arch at --input-size \(224 px\): placement 1 "
                              r"\(1:1 nonlocal\): nonlocal at a 56x56 map"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_runs(tmp_path, args, message):
    space = [] if "--space" in args else ["--space", "smoke"]
    r = train(*args, *space, "--results-dir", tmp_path / "results", timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), r.stderr
    assert not (tmp_path / "results").exists()  # nothing written


# -- end to end: real Ray, real training on Fashion-MNIST -------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One seed, then the run resumed with two: the second seed trains, the first is kept; then resumed again
    with no --seeds: the two it has are all it trains."""
    root = tmp_path_factory.mktemp("train")
    space = write_space(root / "tiny.yaml", TINY_SPACE)
    arch_file = root / "arch.json"
    arch_file.write_text(json.dumps(ULSAM_AT_17))
    first = train("--arch", arch_file, "--space", space, "--results-dir", root / "results", "--run-id", "r")
    second = train("--arch", arch_file, "--space", space, "--results-dir", root / "results", "--run-id", "r",
                   "--seeds", 2)
    # the same network spelled otherwise (its ImageNet size and classes, keys reordered), no --seeds: nothing to run
    respelled = json.dumps({"width": 0.35, "input_size": 224, "num_classes": 1000, **ULSAM_AT_17})
    third = train("--arch", respelled, "--space", space, "--results-dir", root / "results", "--run-id", "r")
    return only_run(root / "results", "train-tiny"), first, second, root, third


@pytest.mark.slow
def test_train_writes_a_run_folder_with_each_seeds_test_accuracy(trained):
    run, first, second, _, _ = trained
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "train train-tiny: mobilenetv2 (width 0.35, input 32, small_input True) with 17:1 ulsam/g2" in first.stdout
    assert "1 seed(s) x 1 epochs" in first.stdout and "resume: 1 trial(s) already finished, 1 to go" in second.stdout
    trials = pd.read_parquet(run / "trials.parquet")
    assert list(trials["status"]) == ["complete", "complete"] and list(trials["seed"]) == [0, 1]
    assert set(trials["placements"]) == {"17:1 ulsam/g2"} and trials["flops"].nunique() == 1
    assert trials["test_acc"].between(0, 1).all() and trials["test_top5"].between(0, 1).all()
    assert (trials["test_top5"] >= trials["test_acc"]).all()
    assert (run / "history.parquet").is_file() and (run / "heatmaps").is_dir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and Arch.from_json(manifest["arch"]) == Arch.from_dict(ULSAM_AT_17)
    assert len(manifest["attempts"]) == 3 and all(a["command"][1] == "train" for a in manifest["attempts"])
    # the table: each seed, then the mean ± std of the two, computed from the trials table
    for r in trials.itertuples():  # one line per seed: trial, seed, val, test top-1, test top-5
        line = f"{r.trial:>5} {r.seed:>6} {r.val_acc_final:>13.4f} {r.test_acc:>13.4f} {r.test_top5:>13.4f}"
        assert line in second.stdout.splitlines(), (line, second.stdout)
    mean, std = np.mean(trials["test_acc"]), np.std(trials["test_acc"], ddof=1)
    lines = second.stdout.splitlines()
    header = next(line for line in lines if line.split()[:2] == ["trial", "seed"])
    row = next(line for line in lines if line.startswith("  mean ± std"))
    assert f"{mean:.4f}±{std:.4f}" in row and len(row) == len(header), (header, row)  # the columns line up
    assert load_study(run, "train-tiny").metric_names == ["val_acc", "flops"]


@pytest.mark.slow
def test_a_trained_run_is_read_by_load_trial_export_and_the_dashboard(trained):
    from nas_attn import load_trial

    run, _, _, root, _ = trained
    model = load_trial(run, 1)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    out = run / "seed1.onnx"
    r = subprocess.run([sys.executable, "-m", "nas_attn", "export", run, "--trial", "1", "--format", "onnx",
                        "--out", out], capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 0 and out.is_file(), r.stderr
    page = root / "page.html"
    r = subprocess.run([sys.executable, "-m", "nas_attn", "dashboard", run, "--out", page], capture_output=True,
                       text=True, env=env(), cwd=REPO, timeout=300)
    assert r.returncode == 0 and "17:1 ulsam/g2" in page.read_text(), r.stderr


@pytest.mark.slow
def test_a_resume_keeps_its_seeds_and_knows_its_arch_however_spelled(trained):
    run, _, _, _, third = trained
    assert third.returncode == 0, third.stderr
    assert "resume: 2 trial(s) already finished, 0 to go" in third.stdout, third.stdout
    assert len(pd.read_parquet(run / "trials.parquet")) == 2
    assert json.loads((run / "manifest.json").read_text())["budget"]["trials"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [
    (["--input-size", "40"], "this run trains at 32 px, not 40 px"),
    (["--recipe", "lr=0.2"], "this run trains with no --recipe, not --recipe lr=0.2"),
])
def test_resuming_at_another_size_or_recipe_is_refused_before_ray(trained, flags, message):
    run, _, _, root, _ = trained
    r = train("--arch", json.dumps(ULSAM_AT_17), "--space", root / "tiny.yaml", "--results-dir", root / "results",
              "--run-id", "r", *flags, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr, r.stderr
    assert len(pd.read_parquet(run / "trials.parquet")) == 2


@pytest.mark.slow
def test_resuming_with_another_arch_is_refused_before_ray(trained):
    run, _, _, root, _ = trained
    other = json.dumps({**ULSAM_AT_17, "placements": [{"position": 17, "module": "ulsam", "groups": 4}]})
    r = train("--arch", other, "--space", root / "tiny.yaml", "--results-dir", root / "results", "--run-id", "r",
              timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "this run trains 17:1 ulsam/g2, not the arch given now" in r.stderr
    assert len(pd.read_parquet(run / "trials.parquet")) == 2
