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


def test_the_resume_command_of_a_training_run_is_a_train_command():
    options = SearchOptions.from_flags(space="smoke", arch="/tmp/a.json", trials=3)
    line = options.command_line("python -m nas_attn train")
    assert line == "python -m nas_attn train --space smoke --seeds 3 --arch /tmp/a.json"
    with pytest.raises(NasAttnError, match=r"^--seeds: .*greater than or equal to 1"):
        SearchOptions.from_flags(space="smoke", arch="{}", trials=0)
    assert SearchOptions.from_flags(space="smoke", arch=json.dumps(ULSAM_AT_17)).given_arch() == \
        Arch.from_dict(ULSAM_AT_17).to_json()


@pytest.mark.parametrize("args,message", [
    (["--arch", "{not json"], r"^nas-attn train: error: arch: not valid JSON"),
    (["--arch", "missing.json"], r"^nas-attn train: error: arch: missing.json: no such file"),
    (["--arch", json.dumps({**ULSAM_AT_17, "placements": [{"position": 40, "module": "ulsam"}]})],
     r"^nas-attn train: error: --arch at this space's input size \(32 px\): placement 1 .*position 40 out of range"),
    (["--arch", json.dumps(ULSAM_AT_17), "--seeds", "0"], r"^nas-attn train: error: --seeds: .*greater than or equal"),
    (["--arch", json.dumps(ULSAM_AT_17), "--space", "nosuchspace"], r"^nas-attn train: error: .*nosuchspace"),
    (["--space", "smoke"], r"^nas-attn train: error: the following arguments are required: --arch"),
    (["--arch", json.dumps(ULSAM_AT_17), "--trials", "2"], r"^nas-attn train: error: unrecognized arguments: --trials"),
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
    """One seed, then the run resumed with two: the second seed trains, the first is kept."""
    root = tmp_path_factory.mktemp("train")
    space = write_space(root / "tiny.yaml", TINY_SPACE)
    arch_file = root / "arch.json"
    arch_file.write_text(json.dumps(ULSAM_AT_17))
    first = train("--arch", arch_file, "--space", space, "--results-dir", root / "results", "--run-id", "r")
    second = train("--arch", arch_file, "--space", space, "--results-dir", root / "results", "--run-id", "r",
                   "--seeds", 2)
    return only_run(root / "results", "train-tiny"), first, second, root


@pytest.mark.slow
def test_train_writes_a_run_folder_with_each_seeds_test_accuracy(trained):
    run, first, second, _ = trained
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
    assert len(manifest["attempts"]) == 2 and all(a["command"][1] == "train" for a in manifest["attempts"])
    # the table: each seed, then the mean ± std of the two, computed from the trials table
    for r in trials.itertuples():  # one line per seed: trial, seed, val, test top-1, test top-5
        line = f"{r.trial:>5} {r.seed:>6} {r.val_acc_final:>8.4f} {r.test_acc:>10.4f} {r.test_top5:>10.4f}"
        assert line in second.stdout.splitlines(), (line, second.stdout)
    mean, std = np.mean(trials["test_acc"]), np.std(trials["test_acc"], ddof=1)
    assert f"{mean:.4f}±{std:.4f}" in second.stdout, second.stdout
    assert load_study(run, "train-tiny").metric_names == ["val_acc", "flops"]


@pytest.mark.slow
def test_a_trained_run_is_read_by_load_trial_export_and_the_dashboard(trained):
    from nas_attn import load_trial

    run, _, _, root = trained
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
def test_resuming_with_another_arch_is_refused_before_ray(trained):
    run, _, _, root = trained
    other = json.dumps({**ULSAM_AT_17, "placements": [{"position": 17, "module": "ulsam", "groups": 4}]})
    r = train("--arch", other, "--space", root / "tiny.yaml", "--results-dir", root / "results", "--run-id", "r",
              timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "this run trains 17:1 ulsam/g2, not the arch given now" in r.stderr
    assert len(pd.read_parquet(run / "trials.parquet")) == 2
