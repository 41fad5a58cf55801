"""Space files: schema, domain checks at both budgets, encodings, run settings, and the search command's
answers to bad input (one line, exit 2, nothing written)."""

import os
import re
import textwrap

import optuna
import pytest
from searchutil import search, write_space

from nas_attn.arch import Arch
from nas_attn.errors import SpaceError
from nas_attn.space import RunSettings, load_space
from nas_attn.space.encoding import ConditionalEncoding, FlatEncoding, make_encoding
from nas_attn.space.files import known_spaces, shipped_spaces_dir

GOOD = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
"""
SHIPPED = sorted(p.stem for p in shipped_spaces_dir().glob("*.yaml"))


def _space(tmp_path, text, name="s"):
    return str(write_space(tmp_path / f"{name}.yaml", textwrap.dedent(text)))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_validates_at_both_budgets_and_encodes(name):
    space = load_space(name)
    assert space.positions and space.trials >= 1
    runs = [space.for_run(RunSettings(), cpu_budget=False, num_classes=10, in_chans=1)]
    if space.file.cpu_budget is not None:
        runs.append(space.for_run(RunSettings(), cpu_budget=True, num_classes=10, in_chans=1))
    for run in runs:
        study = optuna.create_study(directions=run.directions)
        encoding = make_encoding(run)
        for _ in range(10):  # sampled archs are valid at this budget's width, and the params alone describe them
            trial, arch = encoding.ask(study)
            arch.validate()
            assert encoding.arch(trial.params) == arch
            study.tell(trial, [0.5] * len(run.directions))
        if run.asha_grace_period is not None:
            assert run.asha_grace_period <= run.recipe.epochs


@pytest.mark.parametrize("name", SHIPPED)
def test_the_costliest_of_a_shipped_spaces_cpu_budget_archs_counts_and_trains_a_step(name):
    """Each space is runnable on the CPU budget: of a few sampled archs, the one with the most multiply-adds is
    counted, built and takes an optimiser step on a batch at the space's input size."""
    import torch

    from nas_attn import build_model, complexity

    space = load_space(name)
    run = space.for_run(RunSettings(), cpu_budget=space.file.cpu_budget is not None, num_classes=10, in_chans=1)
    study, encoding = optuna.create_study(directions=run.directions), make_encoding(run)
    archs = []
    for _ in range(4):
        trial, arch = encoding.ask(study)
        archs.append((complexity(arch)["flops"], arch))
        study.tell(trial, [0.5] * len(run.directions))
    flops, arch = max(archs, key=lambda fa: fa[0])
    assert flops > 0
    model = build_model(arch).train()
    x = torch.randn(2, 1, arch.input_size, arch.input_size)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())


def test_shipped_spaces_cover_the_issues():
    assert {"mobilenetv2_ulsam", "mobilenetv2_mixed", "mobilenetv1_ulsam", "resnet18_attention", "smoke"} <= set(
        SHIPPED)
    s = load_space("mobilenetv2_ulsam")
    assert [p.index for p in s.positions] == list(range(8, 18))
    assert s.positions[1].modules == ("none", "ulsam") and s.positions[1].groups == (1, 2, 4, 8, 16)
    assert s.positions[0].ops == ("insert",) and s.positions[1].ops == ("insert", "substitute")
    assert s.warnings == ("op substitute is not legal at position(s) 8, 12, 15: not searched there",)
    r = load_space("resnet18_attention")
    assert {p.index: p.ops for p in r.positions}[2] == ("inside", "insert")
    assert set(known_spaces()) >= set(SHIPPED)


def test_flat_encoding_samples_every_choice_in_every_trial():
    s = load_space("smoke")
    study = optuna.create_study(directions=s.directions)
    enc = FlatEncoding(s)
    study.enqueue_trial({"p14.module": "none", "p17.module": "ulsam", "p17.groups": 2, "p17.op": "substitute"})
    for _ in range(5):
        trial, arch = enc.ask(study)
        # module, groups and op at every position, even where the module is "none": the sampler sees them all
        assert set(trial.params) == {"p14.module", "p14.groups", "p14.op", "p17.module", "p17.groups", "p17.op"}
        study.tell(trial, [0.5, 1.0])
    first = study.trials[0]
    assert enc.arch(first.params).short() == "17:ulsam/g2/sub"


def test_conditional_encoding_suggests_groups_and_op_only_with_a_module():
    s = load_space("smoke")
    study = optuna.create_study(directions=s.directions)
    study.enqueue_trial({"p14.module": "none", "p17.module": "ulsam", "p17.groups": 2, "p17.op": "substitute"})
    trial, arch = ConditionalEncoding(s).ask(study)
    assert set(trial.params) == {"p14.module", "p17.module", "p17.groups", "p17.op"}
    assert arch.short() == "17:ulsam/g2/sub"


def test_run_settings_flags_win_over_the_cpu_budget_which_wins_over_the_file():
    s = load_space("mobilenetv2_ulsam")
    cpu = s.for_run(RunSettings(), cpu_budget=True, num_classes=10, in_chans=1)
    b = s.file.cpu_budget
    assert (cpu.trials, cpu.recipe.epochs, cpu.base.width, cpu.train_subset, cpu.recipe.lr, cpu.concurrency) == (
        b.trials, b.epochs, b.width, b.train_subset, b.lr, b.concurrency)
    assert cpu.cpu_budget_applied and not s.cpu_budget_applied
    assert cpu.positions[1].channels == 32  # recompiled at the CPU budget's width (0.5 x 64)
    flagged = s.for_run(RunSettings(trials=3, epochs=5, seed=7, concurrency=1, sampler="tpe"), cpu_budget=True,
                        num_classes=10, in_chans=1)
    assert (flagged.trials, flagged.recipe.epochs, flagged.recipe.seed, flagged.sampler_seed, flagged.concurrency,
            flagged.sampler) == (3, 5, 7, 7, 1, "tpe")
    assert flagged.base.width == b.width and flagged.recipe.batch_size == b.batch_size  # not flags: the budget's
    full = s.for_run(RunSettings(), cpu_budget=False, num_classes=100, in_chans=3)
    assert (full.trials, full.recipe.epochs, full.base.width, full.base.num_classes, full.base.in_chans) == (
        s.file.budget.trials, s.file.train.epochs, 1.0, 100, 3)
    mixed = load_space("mobilenetv2_mixed")
    assert mixed.for_run(RunSettings(), cpu_budget=True, num_classes=10, in_chans=1).asha_grace_period == 1
    assert mixed.asha_grace_period == 4


def test_constraint_violations_are_relative_and_name_the_first_limit(tmp_path):
    s = load_space(_space(tmp_path, GOOD + "constraints: {max_flops: 1.0e+7, max_params: 1000000}\n"))
    arch = s.arch([])
    v = s.violation(arch, {"flops": 15_000_000, "params": 500_000})
    assert v.values == pytest.approx({"max_flops": 0.5, "max_params": -0.5}) and v.reason == "flops 15.00M > max_flops 10.00M"
    assert s.violation(arch, {"flops": 5_000_000, "params": 500_000}).reason is None


MALFORMED = [
    (GOOD + "colour: red\n", r"s\.yaml: colour: unknown key"),
    (GOOD.replace("width: 0.35", "width: wide"), r"backbone\.width: Input should be a valid number"),
    (GOOD.replace("width: 0.35", "width: 1.0e+300"), r"backbone\.width: Input should be less than or equal to 16"),
    (GOOD.replace("width: 0.35", "width: .nan"), r"backbone\.width: Input should be a finite number"),
    (GOOD.replace("modules: [none, ulsam]", "modules: []"), r"search\.modules: empty list"),
    (GOOD.replace("[14, 17]", "[14, 27]"), r"search\.positions: position 27 out of range for mobilenetv2"),
    (GOOD.replace("[14, 17]", '"17-8"'), r"search\.positions: empty range '17-8'"),
    (GOOD.replace("[14, 17]", '"1-1000000"'), r"search\.positions: 1000000 positions"),
    (GOOD.replace("groups: [2, 4]", "groups: [2, 5]"), r"search\.groups: groups \[5\] do not divide"),
    (GOOD.replace("[none, ulsam]", "[none, ulsamm]"), r"search\.modules: unknown value 'ulsamm'"),
    (GOOD.replace("[14, 17]", "[4, 17]").replace("ulsam]", "csm]").replace("input_size: 32", "input_size: 64"),
     r"csm at position 4 .* 4096 positions"),
    (GOOD.replace("ops: [insert, substitute]", "ops: [insert, substitute], strict_ops: true").replace("[14, 17]", "[15]"),
     r"op substitute not legal .*strict_ops"),
    (GOOD + "train: {epochs: 0}\n", r"train\.epochs: Input should be greater than or equal to 1"),
    (GOOD + "train: {lr: fast}\n", r"train\.lr: Input should be a valid number"),
    (GOOD + "train: {lr: .inf}\n", r"train\.lr: Input should be a finite number"),
    (GOOD + "train: {momentum: -1}\n", r"train\.momentum: Input should be greater than or equal to 0"),
    (GOOD + "train: {weight_decay: -1}\n", r"train\.weight_decay: Input should be greater than or equal to 0"),
    (GOOD + "train: {eval_batch_size: 0}\n", r"train\.eval_batch_size: Input should be greater than or equal to 1"),
    (GOOD + "train: {epochs: true}\n", r"train\.epochs: Input should be a valid integer"),
    (GOOD + "train: {epochs: 1000001}\n", r"train\.epochs: Input should be less than or equal to 1000000"),
    (GOOD + "train: {crop_padding: 1000000000}\n", r"train\.crop_padding: Input should be less than or equal to 4096"),
    (GOOD + "train: {eval_batch_size: 100000000000000000000}\n",
     r"train\.eval_batch_size: Input should be less than or equal to 65536"),
    (GOOD + "train: {batch_size: 65537}\n", r"train\.batch_size: Input should be less than or equal to 65536"),
    (GOOD + "train: {schedule: multistep, milestones: [2, 10000000]}\n",
     r"train\.milestones\.1: Input should be less than or equal to 1000000"),
    (GOOD + "train: {bn_recalibration: 1.0e+12}\n", r"train\.bn_recalibration: Input should be a valid integer"),
    (GOOD + "train: {bn_recalibration: 100000000000}\n",
     r"train\.bn_recalibration: Input should be less than or equal to 12800000"),
    (GOOD + "cpu_budget: {batch_size: 1000000}\n", r"cpu_budget: batch_size: Input should be less than or equal to"),
    (GOOD + "train: {epochz: 3}\n", r"train\.epochz: unknown key"),
    (GOOD + "sampler: {name: cmaes}\n", r"sampler\.name: unknown sampler 'cmaes': one of nsga2, tpe, random, gp, or "
                                         r"a factory's import path"),
    (GOOD + "sampler: {name: 'my pkg'}\n", r"sampler\.name: 'my pkg' is neither a sampler's name"),
    (GOOD + "sampler: {name: 'no_such_pkg_xyz.samplers:make'}\n",
     r"sampler\.name: sampler 'no_such_pkg_xyz.samplers:make': cannot import 'no_such_pkg_xyz.samplers' "
     r"\(ModuleNotFoundError"),
    (GOOD + "sampler: {name: 'json:no_such_factory'}\n", r"sampler\.name: sampler 'json:no_such_factory': json has no "
                                                        r"'no_such_factory'"),
    (GOOD + "sampler: {name: 'json:__doc__'}\n", r"sampler 'json:__doc__': '__doc__' is not callable"),
    (GOOD + "sampler: {options: [1]}\n", r"sampler\.options: Input should be a valid dictionary"),
    (GOOD + "sampler: {seed: 18446744073709551616}\n", r"sampler\.seed: Input should be less than 4294967296"),
    (GOOD + "sampler: {population_size: -1}\n", r"sampler\.population_size: Input should be greater than or equal to 2"),
    (GOOD + "budget: {concurrency: -1}\n", r"budget\.concurrency: Input should be greater than or equal to 1"),
    (GOOD + "resources: {cpu: .nan}\n", r"resources\.cpu: Input should be a finite number"),
    (GOOD + "constraints: {max_flops: .nan}\n", r"constraints\.max_flops: Input should be a finite number"),
    (GOOD + "early_stopping: {scheduler: hyperband}\n", r"early_stopping\.scheduler: Input should be 'asha'"),
    (GOOD + "early_stopping: {grace_period: 4}\ntrain: {epochs: 2}\n",
     r"early_stopping\.grace_period 4 exceeds train\.epochs 2"),
    (GOOD + "early_stopping: {grace_period: 2}\ntrain: {epochs: 4}\ncpu_budget: {epochs: 1}\n",
     r"early_stopping\.grace_period 2 exceeds cpu_budget\.epochs 1"),
    (GOOD.replace("width: 0.35", "width: 1.0").replace("groups: [2, 4]", "groups: [2, 16]")
     + "cpu_budget: {width: 0.25}\n", r"groups \[16\] do not divide the 24 channels .*at cpu_budget\.width 0\.25"),
    (GOOD + "cpu_budget: {lr: -1}\n", r"cpu_budget\.lr: Input should be greater than 0"),
    ("backbone: [1, 2\n", r"not valid YAML at line"),
    ("- just\n- a list\n", r"expected a mapping of keys at the top level"),
    (GOOD.replace("mobilenetv2,", "vgg16,"), r"backbone: unknown backbone 'vgg16'"),
    (GOOD + "objectives: [flops, params]\n", r"objectives: need val_acc"),
    (GOOD + "objectives: [val_acc, val_acc]\n", r"objectives: need val_acc .* each once"),
    (GOOD.replace("name: fashion_mnist", "name: mnist"), r"dataset\.name: unknown dataset 'mnist'"),
    (GOOD.replace("input_size: 32", "input_size: 1000000000000"), r"dataset\.input_size: Input should be less than"),
    (GOOD.replace("input_size: 32", "input_size: 32, val_fraction: 1.0"), r"dataset\.val_fraction: Input should be less than 1"),
    (GOOD.replace("input_size: 32", "input_size: 32, train_subset: -5"), r"dataset\.train_subset: Input should be greater"),
    (GOOD + "name: ../../escape\n", r"name '\.\./\.\./escape': must be a plain folder name"),
    (GOOD + "name: /tmp/abs\n", r"name '/tmp/abs': must be a plain folder name"),
    (GOOD + "imports: ['']\n", r"imports: '' is not a Python module name"),
    (GOOD + "imports: [../x]\n", r"imports: '\.\./x' is not a Python module name"),
    (GOOD + "imports: [no_such_module_here]\n", r"imports: cannot import 'no_such_module_here' \(ModuleNotFoundError"),
    (GOOD.replace("search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}\n", "search: {positions: [14], modules: [none, se], overrides: {17: {modules: [se]}}}\n"),
     r"search\.overrides\.17: position 17 is not in search\.positions"),
    (GOOD.replace("search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}\n", "search: {positions: [14], modules: [none, se], overrides: {14: {colours: [se]}}}\n"),
     r"search\.overrides\.14\.colours: unknown key"),
]


@pytest.mark.parametrize("text,message", MALFORMED)
def test_malformed_space_is_rejected_with_file_key_and_reason(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message) as err:
        load_space(_space(tmp_path, text))
    assert "\n" not in str(err.value) and "s.yaml" in str(err.value)


def test_unreadable_space_files(tmp_path):
    latin1 = tmp_path / "latin.yaml"
    latin1.write_bytes(GOOD.encode() + "description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpaceError, match="latin.yaml: not UTF-8 text"):
        load_space(str(latin1))
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SpaceError, match="deep.yaml: "):
        load_space(str(deep))
    with pytest.raises(SpaceError, match="no such space file"):
        load_space(str(tmp_path / "missing.yaml"))


def test_unknown_space_name():
    with pytest.raises(SpaceError, match="unknown space 'nope' .*smoke"):
        load_space("nope")


BAD_COMMANDS = [
    (["--space", "BAD"], r"bad\.yaml: search\.modules: empty list"),
    (["--space", "smoke", "--trials", "0"], r"--trials: Input should be greater than or equal to 1"),
    (["--space", "smoke", "--cpus-per-trial", "nan"], r"--cpus-per-trial: Input should be a finite number"),
    (["--space", "smoke", "--gpus-per-trial", "inf"], r"--gpus-per-trial: Input should be a finite number"),
    (["--space", "smoke", "--gpus-per-trial", "1.5"], r"--gpus-per-trial: above 1 it must be a whole number"),
    (["--space", "smoke", "--seed", "-1"], r"--seed: Input should be greater than or equal to 0"),
    (["--space", "smoke", "--seed", str(2**64)], r"--seed: Input should be less than 4294967296"),
    (["--space", "smoke", "--storage-path", "ftp://host/x"], r"--storage-path: unknown scheme 'ftp'"),
    (["--space", "smoke", "--storage", "notaurl"], r"--storage: expected a database URL"),
    (["--space", "smoke", "--run-id", ""], r"--run-id: empty \(got ''\)"),
    (["--space", "smoke", "--run-id", "../x"], r"--run-id '\.\./x': must be a plain folder name"),
    (["--space", "smoke", "--results-dir", "FILE"], r"--results-dir .*: not a folder"),
    (["--space", "smoke", "--results-dir", "/proc/nas-attn"], r"--results-dir /proc/nas-attn: cannot write in /proc"),
    (["--space", "smoke", "--results-dir", "FILE/below"], r"--results-dir .*/below: .*a-file is not a folder"),
    (["--space", "smoke", "--data-root", "/nonexistent/fmnist"], r"--data-root /nonexistent/fmnist: no such directory"),
    (["--space", "smoke", "--bogus-flag"], r"unrecognized arguments: --bogus-flag"),
    (["--space", "smoke", "--resume"], r"--resume: no earlier run of space 'smoke'"),
    (["--space", "smoke", "--resume", "--run-id", "typo-id"],
     r"--resume --run-id typo-id: no run to resume in .*/smoke/typo-id \(no manifest\.json\)"),
    (["--space", "smoke", "--cpus-per-trial", str((os.cpu_count() or 1) + 1)],
     r"--cpus-per-trial \d+: more CPUs per trial than this machine has \(\d+\); a local Ray would wait"),
    (["--space", "smoke", "--address", "127.0.0.1:9"], r"--address 127\.0\.0\.1:9: no Ray cluster answers there"),
    (["--space", "mobilenetv2_mixed", "--epochs", "2", "--full-budget"], r"--epochs 2: fewer than ASHA's grace period"),
]


@pytest.mark.parametrize("args,message", BAD_COMMANDS)
def test_search_command_rejects_bad_input_in_one_line(tmp_path, args, message):
    bad = write_space(tmp_path / "bad.yaml", GOOD.replace("modules: [none, ulsam]", "modules: []"))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    args = [str(bad) if a == "BAD" else a.replace("FILE", str(a_file)) for a in args]
    results = tmp_path / "results"
    if "--results-dir" not in args:
        args += ["--results-dir", str(results)]
    r = search(*args, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not results.exists()  # nothing written


def test_empty_split_is_refused_before_anything_runs(tmp_path):
    space = _space(tmp_path, GOOD.replace("input_size: 32", "input_size: 32, train_subset: 3"), name="tiny")
    r = search("--space", space, "--results-dir", tmp_path / "results", timeout=120)
    assert r.returncode == 2 and "dataset.train_subset: the training split has" in r.stderr, r.stderr
    assert not (tmp_path / "results").exists()


def test_arch_from_space_round_trips():
    s = load_space("mobilenetv2_ulsam")
    study = optuna.create_study(directions=s.directions)
    trial, arch = make_encoding(s).ask(study)
    assert Arch.from_json(arch.to_json()) == arch


def test_the_start_up_line_names_positions_as_they_are():
    """A space on positions [14, 17] said "positions 14-17"; runs of consecutive positions are joined."""
    from nas_attn.space.space import index_ranges

    assert index_ranges([14, 17]) == "14, 17"
    assert index_ranges([10, 8, 9, 14, 16, 17]) == "8-10, 14, 16-17"
    assert index_ranges([5]) == "5"
