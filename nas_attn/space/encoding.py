"""How Optuna's samplers see a space: parameters per position, and the arch those parameters describe.

Three encodings (``search.encoding`` in a space file):

- ``joint`` (default): one categorical parameter per position over every (module, groups, op) it allows,
  so crossover and mutation move a position's whole choice at once (:class:`JointEncoding`);
  ``scripts/bench_sampler.py`` measured it best for every sampler.
- ``flat``: at every position ``p{k}.module``, ``p{k}.groups`` and ``p{k}.op`` are always
  sampled, from fixed distributions passed to :meth:`optuna.Study.ask`; groups and op are ignored where
  the module takes none (or is ``none``). Every trial has every parameter, so NSGA-II's crossover and
  mutation act on module, groups and op alike, and TPE models them jointly.
- ``conditional``: define-by-run; groups and op are suggested only when a module is chosen. Samplers
  that work on the intersection of trials' parameters (NSGA-II's crossover, multivariate TPE) then
  never see groups and op and resample them at random. Kept for comparison
  (``scripts/bench_sampler.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from nas_attn.arch import Arch, Placement
from nas_attn.modules import get_entry
from nas_attn.space.space import NONE, PositionChoice, SearchSpace


def module_key(k: int) -> str:
    return f"p{k}.module"


def groups_key(k: int) -> str:
    return f"p{k}.groups"


def op_key(k: int) -> str:
    return f"p{k}.op"


class Encoding(ABC):
    """Turns a space into Optuna parameters and parameters back into an arch."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @abstractmethod
    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, Arch]:
        """A new trial of ``study`` (its parameters sampled) and the arch it describes."""

    def arch(self, params: dict[str, Any]) -> Arch:
        """The arch described by ``params``; a missing groups/op takes the position's first choice."""
        placements = []
        for pc in self.space.positions:
            module = params.get(module_key(pc.index), NONE)
            if module == NONE:
                continue
            groups = params.get(groups_key(pc.index), pc.groups[0]) if get_entry(module).takes_groups else None
            placements.append(Placement(pc.index, module, params.get(op_key(pc.index), pc.ops[0]), groups))
        return self.space.arch(placements)

    def vanilla_params(self) -> dict[str, Any]:
        """Parameters of the backbone without placements (to enqueue it as the first trial)."""
        return {module_key(pc.index): NONE for pc in self.space.positions}


class FixedEncoding(Encoding):
    """No parameters: every trial is the space's one fixed arch (``nas-attn train``), with its own seed."""

    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, Arch]:
        return study.ask(), self.arch({})

    def arch(self, params: dict[str, Any]) -> Arch:
        assert self.space.fixed is not None, "FixedEncoding needs a space made by SearchSpace.for_arch"
        return self.space.fixed


def _takes_groups(pc: PositionChoice) -> bool:
    return any(get_entry(m).takes_groups for m in pc.real_modules)


class FlatEncoding(Encoding):
    """Module, groups and op sampled at every position, always (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self.distributions: dict[str, BaseDistribution] = {}
        for pc in space.positions:
            self.distributions[module_key(pc.index)] = CategoricalDistribution(list(pc.modules))
            if _takes_groups(pc) and len(pc.groups) > 1:
                self.distributions[groups_key(pc.index)] = CategoricalDistribution(list(pc.groups))
            if pc.real_modules and len(pc.ops) > 1:
                self.distributions[op_key(pc.index)] = CategoricalDistribution(list(pc.ops))

    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, Arch]:
        trial = study.ask(self.distributions)
        return trial, self.arch(trial.params)


class JointEncoding(Encoding):
    """One categorical parameter per position over every (module, groups, op) it allows, e.g.
    ``p14 = "ulsam/g4/substitute"``: crossover and mutation move a position's whole choice at once."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)
        self.choices: dict[int, dict[str, tuple[str, int | None, str]]] = {}
        for pc in space.positions:
            self.choices[pc.index] = {
                NONE if p is None else (f"{p.module}/g{p.groups}/{p.op}" if p.groups else f"{p.module}/{p.op}"):
                (NONE, None, pc.ops[0]) if p is None else (p.module, p.groups, p.op) for p in pc.choices()}
        self.distributions = {f"p{k}": CategoricalDistribution(list(c)) for k, c in self.choices.items()}

    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, Arch]:
        trial = study.ask(self.distributions)
        return trial, self.arch(trial.params)

    def arch(self, params: dict[str, Any]) -> Arch:
        placements = []
        for k, options in self.choices.items():
            module, groups, op = options[params.get(f"p{k}", NONE)] if f"p{k}" in params else options.get(
                NONE, next(iter(options.values())))
            if module != NONE:
                placements.append(Placement(k, module, op, groups))
        return self.space.arch(placements)

    def vanilla_params(self) -> dict[str, Any]:
        return {f"p{k}": NONE for k in self.choices}


class ConditionalEncoding(Encoding):
    """Define-by-run: a module per position; its groups and op only when a module is chosen."""

    def ask(self, study: optuna.Study) -> tuple[optuna.Trial, Arch]:
        trial = study.ask()
        for pc in self.space.positions:
            module = trial.suggest_categorical(module_key(pc.index), list(pc.modules))
            if module == NONE:
                continue
            if get_entry(module).takes_groups and len(pc.groups) > 1:
                trial.suggest_categorical(groups_key(pc.index), list(pc.groups))
            if len(pc.ops) > 1:
                trial.suggest_categorical(op_key(pc.index), list(pc.ops))
        return trial, self.arch(trial.params)


ENCODINGS: dict[str, type[Encoding]] = {"flat": FlatEncoding, "joint": JointEncoding,
                                        "conditional": ConditionalEncoding}


def make_encoding(space: SearchSpace, name: str | None = None) -> Encoding:
    """The encoding ``name`` (default: the space's ``search.encoding``) of ``space``; a space with a fixed arch
    (``nas-attn train``) has no parameters to encode."""
    if space.fixed is not None:
        return FixedEncoding(space)
    return ENCODINGS[name or space.file.search.encoding](space)
