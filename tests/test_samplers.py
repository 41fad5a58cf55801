"""Samplers are swappable: a user's factory named by import path in the space file makes the study's sampler,
through the code the search runs (flags, checks, plan, study); a bad path or option is one line, exit 2."""

import re
import textwrap

import optuna
import pytest
from searchutil import search, write_space

from nas_attn.errors import NasAttnError
from nas_attn.plan import DatasetInfo, SearchOptions, check_options_against_space, make_plan
from nas_attn.runfolder import RunFolder
from nas_attn.samplers import BUILTIN_SAMPLERS, SamplerRequest, create_sampler, register_sampler, sampler_names
from nas_attn.space import SAMPLERS, load_space
from nas_attn.space.encoding import make_encoding
from nas_attn.study import open_study

SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
budget: {trials: 5}
sampler: SAMPLER
"""

#: a user's sampler: every categorical takes its choice number ``pick``; it counts what it is asked
USER_MODULE = '''
import optuna

REQUESTS = []
SAMPLED = []


class Pick(optuna.samplers.BaseSampler):
    def __init__(self, pick):
        self.pick = pick

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        SAMPLED.append(param_name)
        return param_distribution.choices[self.pick % len(param_distribution.choices)]


def make(request):
    REQUESTS.append(request)
    return Pick(**request.options)
'''


def _space_file(tmp_path, sampler: str):
    return write_space(tmp_path / "user.yaml", textwrap.dedent(SPACE).replace("SAMPLER", sampler))


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_samplers_mod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_samplers_mod

    yield user_samplers_mod
    monkeypatch.delitem(__import__("sys").modules, "user_samplers_mod")


def test_a_user_factory_by_import_path_makes_the_study_sampler(tmp_path, user_module):
    path = _space_file(tmp_path, "{name: 'user_samplers_mod:make', seed: 7, options: {pick: 1}}")
    options = SearchOptions.from_flags(space=str(path))
    space = load_space(options.space)
    check_options_against_space(options, space)  # the search makes the sampler once before anything runs
    assert [(r.seed, dict(r.options), r.trials) for r in user_module.REQUESTS] == [(7, {"pick": 1}, 5)]
    plan = make_plan(options, space, RunFolder(tmp_path / "run", False), DatasetInfo("fashion_mnist", "x", 10, 1),
                     {"CPU": 2.0})
    study = open_study(plan, optuna.storages.InMemoryStorage(), plan.new_study_name)
    assert isinstance(study.sampler, user_module.Pick) and study.sampler.pick == 1
    assert len(user_module.REQUESTS) == 2 and user_module.REQUESTS[1].seed == 7  # seed + trials so far (none)
    encoding = make_encoding(plan.space)
    archs = []
    for i in range(3):
        trial, arch = encoding.ask(study)
        study.tell(trial, [0.5 + i / 10, 1e6])
        archs.append(arch.short())
    # choice 1 of each position's joint parameter (none, then ulsam/g2 inserted, …): the user's sampler chose
    assert archs == ["14:1 ulsam/g2, 17:1 ulsam/g2"] * 3
    assert len(user_module.SAMPLED) == 3 * 2 and len(study.trials) == 3
    # a resume moves the seed on by the trials the study already has
    open_study(plan, study._storage, plan.new_study_name)
    assert user_module.REQUESTS[-1].seed == 7 + 3


def test_a_registered_sampler_is_named_like_a_built_in_one(tmp_path, user_module):
    register_sampler("pick-two", lambda request: user_module.Pick(2))
    try:
        space = load_space(str(_space_file(tmp_path, "{name: pick-two}")))
        sampler = create_sampler(space.sampler, space.sampler_request(0))
        assert isinstance(sampler, user_module.Pick) and sampler.pick == 2
        assert sampler_names()[:4] == BUILTIN_SAMPLERS == SAMPLERS == ("nsga2", "tpe", "random", "gp")
    finally:
        from nas_attn import samplers

        samplers._REGISTRY.pop("pick-two")


def test_built_in_samplers_take_their_optuna_options(tmp_path):
    space = load_space(str(_space_file(tmp_path, "{name: tpe, options: {n_startup_trials: 3, n_ei_candidates: 7}}")))
    tpe = create_sampler("tpe", space.sampler_request(1))
    assert isinstance(tpe, optuna.samplers.TPESampler) and tpe._n_startup_trials == 3 and tpe._n_ei_candidates == 7
    nsga2 = load_space(str(_space_file(tmp_path, "{name: nsga2, population_size: 6}")))
    assert create_sampler("nsga2", nsga2.sampler_request(0))._population_size == 6
    # defaults as before the registry: TPE's start-up from the budget (5 trials: 2), NSGA-II's population 16
    assert create_sampler("tpe", SamplerRequest(0, {}, 5))._n_startup_trials == 2
    assert create_sampler("nsga2", SamplerRequest(0))._population_size == 16


def test_a_factory_returning_something_else_is_refused(tmp_path):
    with pytest.raises(NasAttnError, match=r"sampler 'json:dumps': TypeError"):
        create_sampler("json:dumps", SamplerRequest(0))  # dumps(request): not JSON serialisable
    with pytest.raises(NasAttnError, match=r"sampler 'builtins:vars': the factory returned dict, not an "
                                           r"optuna\.samplers\.BaseSampler"):
        create_sampler("builtins:vars", SamplerRequest(0))  # vars(request): its fields


@pytest.mark.parametrize("sampler,message", [
    ("{name: 'no_such_pkg_xyz.samplers:make'}",
     r"user\.yaml: sampler\.name: sampler 'no_such_pkg_xyz\.samplers:make': cannot import 'no_such_pkg_xyz\.samplers' "
     r"\(ModuleNotFoundError"),
    ("{name: tpe, options: {no_such_option: 1}}",
     r"sampler 'tpe': TypeError: .*no_such_option"),
])
def test_search_command_refuses_a_bad_sampler_in_one_line(tmp_path, sampler, message):
    path = _space_file(tmp_path, sampler)
    results = tmp_path / "results"
    r = search("--space", str(path), "--results-dir", str(results), timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not results.exists()  # before the run folder, before Ray
