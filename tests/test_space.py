import importlib.util
import textwrap

import optuna
import pytest
from searchutil import search, write_space

from nas_attn.arch import Arch
from nas_attn.errors import SpaceError
from nas_attn.space import SPACES_DIR, load_space

GOOD = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
"""


def _space(tmp_path, text, name="s"):
    return str(write_space(tmp_path / f"{name}.yaml", textwrap.dedent(text)))


@pytest.mark.parametrize("name", sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
def test_every_shipped_space_loads(name):
    space = load_space(name)
    assert space.positions and space.trials >= 1
    study = optuna.create_study(directions=space.directions)
    for _ in range(20):  # define-by-run gives valid archs, and the params alone describe them
        trial = study.ask()
        arch = Arch.from_json(space.suggest(trial)["arch"])
        arch.validate()
        assert space.arch_from_params(trial.params) == arch


def test_shipped_spaces_cover_the_issue():
    assert {"mobilenetv2_ulsam", "mobilenetv2_mixed", "mobilenetv1_ulsam", "resnet18_attention", "smoke"} <= {
        p.stem for p in SPACES_DIR.glob("*.yaml")}
    s = load_space("mobilenetv2_ulsam")
    assert [p.index for p in s.positions] == list(range(8, 18))
    assert s.positions[1].modules == ("none", "ulsam") and s.positions[1].groups == (1, 2, 4, 8, 16)
    assert s.positions[0].ops == ("insert",) and s.positions[1].ops == ("insert", "substitute")
    assert any("position 8" in w and "dropped" in w for w in s.warnings)
    r = load_space("resnet18_attention")
    assert {p.index: p.ops for p in r.positions}[2] == ("inside", "insert")


def test_conditional_parameters():
    s = load_space("smoke")
    study = optuna.create_study(directions=s.directions)
    study.enqueue_trial({"p14.module": "none", "p17.module": "ulsam", "p17.groups": 2, "p17.op": "substitute"})
    t = study.ask()
    arch_json = s.suggest(t)["arch"]
    assert set(t.params) == {"p14.module", "p17.module", "p17.groups", "p17.op"}  # no groups/op for "none"
    assert '"position": 17' in arch_json and '"op": "substitute"' in arch_json


@pytest.mark.parametrize(
    "text,message",
    [
        (GOOD + "colour: red\n", r"s\.yaml: colour: unknown key"),
        (GOOD.replace("width: 0.35", "width: wide"), r"backbone\.width: expected integer or number, got 'wide'"),
        (GOOD.replace("modules: [none, ulsam]", "modules: []"), r"search\.modules: empty list"),
        (GOOD.replace("[14, 17]", "[14, 27]"), r"search\.positions: position 27 out of range for mobilenetv2"),
        (GOOD.replace("groups: [2, 4]", "groups: [2, 5]"), r"search\.groups: groups \[5\] do not divide"),
        (GOOD.replace("[none, ulsam]", "[none, ulsamm]"), r"search\.modules: unknown value 'ulsamm'"),
        (GOOD.replace("[14, 17]", "[4, 17]").replace("ulsam]", "csm]").replace("input_size: 32", "input_size: 64"),
         r"csm at position 4 .* 4096 positions"),
        (GOOD.replace("ops: [insert, substitute]", "ops: [insert, substitute], strict_ops: true").replace("[14, 17]", "[15]"),
         r"op substitute not legal .*strict_ops"),
        (GOOD + "train: {epochs: 0}\n", r"train\.epochs: Input should be greater than or equal to 1"),
        (GOOD + "train: {lr: fast}\n", r"train\.lr: expected integer or number"),
        (GOOD + "sampler: {name: cmaes}\n", r"sampler\.name: unknown sampler 'cmaes'"),
        (GOOD + "early_stopping: {scheduler: hyperband}\n", r"early_stopping\.scheduler: only 'asha'"),
        (GOOD.replace("width: 0.35", "width: 1.0").replace("groups: [2, 4]", "groups: [2, 16]")
         + "cpu_budget: {width: 0.25}\n", r"groups \[16\] do not divide the 24 channels .*at cpu_budget\.width 0\.25"),
        ("backbone: [1, 2\n", r"not valid YAML at line"),
        (GOOD.replace("mobilenetv2,", "vgg16,"), r"unknown backbone 'vgg16'"),
        (GOOD + "objectives: [flops, params]\n", r"objectives: need val_acc"),
    ],
)
def test_malformed_space_is_rejected_with_file_key_and_reason(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message) as err:
        load_space(_space(tmp_path, text))
    assert "\n" not in str(err.value) and "s.yaml" in str(err.value)


def test_unknown_space_name():
    with pytest.raises(SpaceError, match="unknown space 'nope'"):
        load_space("nope")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--space", "BAD"], r"search_spaces/?.*bad.yaml: search\.modules: empty list|bad\.yaml: search\.modules: empty list"),
        (["--space", "smoke", "--trials", "0"], r"--trials: must be >= 1"),
        (["--space", "smoke", "--data-root", "/nonexistent/fmnist"], r"--data-root /nonexistent/fmnist: no such directory"),
        (["--space", "smoke", "--bogus-flag"], r"unrecognized arguments: --bogus-flag"),
        (["--space", "smoke", "--resume"], r"--resume: no earlier run of space 'smoke'"),
        (["--space", "smoke", "--sampler", "gp"], r"sampler gp: .*(scipy|no GPSampler)"),
    ],
)
def test_search_command_rejects_bad_input_in_one_line(tmp_path, args, message):
    if "gp" in args and importlib.util.find_spec("scipy") is not None:
        pytest.skip("scipy is installed here: the gp sampler is available")
    bad = write_space(tmp_path / "bad.yaml", GOOD.replace("modules: [none, ulsam]", "modules: []"))
    args = [str(bad) if a == "BAD" else a for a in args]
    results = tmp_path / "results"
    r = search(*args, "--results-dir", results, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    import re

    assert re.search(message, lines[0]), lines[0]
    assert not results.exists() or not any(results.rglob("*.parquet"))  # nothing half-written
