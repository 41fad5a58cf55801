"""How fast each sampler finds the front under each encoding of a space, without training (prints JSON).

Every arch gets a fixed synthetic accuracy: 0.80 plus, for each placement, a gain drawn once from a seeded
generator for that (position, module, groups, op), around a mean set by its op; and its real FLOPs
(``nas_attn.complexity``: per-placement costs are measured once and added, which the script checks
against a full count on sampled archs). Two objectives: ``generous`` (inserting helps, substituting costs a
little on average) and ``harsh`` (every placement costs on average, so the front holds few placements).
Each (sampler, encoding) runs ``--proposals`` ask/tell rounds with several seeds; the hypervolume of
(accuracy, FLOPs) after 16, 32, 64 proposals is Optuna's (``plot_hypervolume_history``), at one fixed
reference point. Ratios are taken within this run: each encoding (``flat``, ``joint``) / the old one
(``conditional``) for each sampler, and NSGA-II / random search for each encoding.

    python scripts/bench_sampler.py [--space mobilenetv2_ulsam] [--proposals 64] [--seeds 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
import zlib

import numpy as np
import optuna

from nas_attn.arch import Arch, Placement
from nas_attn.complexity import complexity
from nas_attn.space import RunSettings, SearchSpace, load_space
from nas_attn.space.encoding import make_encoding
from nas_attn.study import make_sampler

SAMPLERS = ("nsga2", "tpe", "random")
ENCODINGS = ("conditional", "flat", "joint")
CHECKPOINTS = (16, 32, 64)


#: mean accuracy gain of a placement by op: "generous" (inserting helps, substituting costs a little) and
#: "harsh" (every placement costs on average: the front holds few placements)
OBJECTIVES = {"generous": {"insert": 0.002, "substitute": -0.003}, "harsh": {"insert": -0.001, "substitute": -0.008}}


class SyntheticObjective:
    """Fixed synthetic accuracy and real FLOPs of any arch of ``space`` (see the module docstring)."""

    def __init__(self, space: SearchSpace, means: dict[str, float], seed: int = 1234) -> None:
        self.space, self.means, self.seed = space, means, seed
        self.vanilla = complexity(space.arch([]))["flops"]
        self._delta: dict[tuple, int] = {}

    def _key(self, p: Placement) -> tuple:
        return (p.position, p.module, p.groups, p.op)

    def gain(self, p: Placement) -> float:
        rng = np.random.default_rng([self.seed, zlib.crc32(repr(self._key(p)).encode())])
        mean = self.means.get(p.op, 0.0)
        return float(rng.normal(mean, 0.006))

    def flops(self, arch: Arch) -> int:
        total = self.vanilla
        for p in arch.placements:
            if self._key(p) not in self._delta:
                self._delta[self._key(p)] = complexity(self.space.arch([p]))["flops"] - self.vanilla
            total += self._delta[self._key(p)]
        return total

    def __call__(self, arch: Arch) -> tuple[float, float]:
        return 0.80 + sum(self.gain(p) for p in arch.placements), float(self.flops(arch))


def run(space: SearchSpace, objective: SyntheticObjective, sampler: str, encoding: str, seed: int,
        proposals: int) -> optuna.Study:
    run_space = space.for_run(RunSettings(sampler=sampler, seed=seed), cpu_budget=False,
                              num_classes=space.base.num_classes, in_chans=space.base.in_chans)
    study = optuna.create_study(directions=run_space.directions, sampler=make_sampler(run_space, seed))
    enc = make_encoding(run_space, encoding)
    for _ in range(proposals):
        trial, arch = enc.ask(study)
        study.tell(trial, list(objective(arch)))
    return study


def hypervolumes(study: optuna.Study, reference: list[float]) -> dict[int, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fig = optuna.visualization.plot_hypervolume_history(study, reference)
    hv = list(fig.data[0].y)
    return {n: float(hv[min(n, len(hv)) - 1]) for n in CHECKPOINTS if n <= len(hv)}


def check_additive_flops(space: SearchSpace, objective: SyntheticObjective, samples: int = 8) -> int:
    """The summed per-placement FLOPs equal a full count (on sampled archs); returns how many were checked."""
    study = optuna.create_study(directions=space.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    enc = make_encoding(space)
    for _ in range(samples):
        trial, arch = enc.ask(study)
        assert objective.flops(arch) == complexity(arch)["flops"], arch.short()
        study.tell(trial, [0.5, 1.0])
    return samples


def compare(space: SearchSpace, objective: SyntheticObjective, proposals: int, seeds: int) -> dict:
    """Hypervolumes of every (sampler, encoding) over ``seeds`` seeds, and the ratios between them."""
    reference = [0.75, 1.02 * objective.vanilla]  # near the space's archs, so that differences show
    hv: dict[str, dict[str, dict[int, list[float]]]] = {}
    for sampler in SAMPLERS:
        for encoding in ENCODINGS:
            per_seed = [hypervolumes(run(space, objective, sampler, encoding, s, proposals), reference)
                        for s in range(seeds)]
            hv.setdefault(sampler, {})[encoding] = {n: [h[n] for h in per_seed] for n in per_seed[0]}
    mean = {s: {e: {n: float(np.mean(v)) for n, v in r.items()} for e, r in es.items()} for s, es in hv.items()}

    def table(fn) -> dict:
        return {s: {e: {str(n): fn(v) for n, v in r.items()} for e, r in es.items()} for s, es in hv.items()}

    return {
        "reference_point": {"accuracy": reference[0], "mflops": round(reference[1] / 1e6, 3)},
        "hypervolume_mean": table(lambda v: round(float(np.mean(v)), 1)),
        "hypervolume_std": table(lambda v: round(float(np.std(v)), 1)),
        "ratio_to_conditional": {s: {e: {str(n): round(mean[s][e][n] / mean[s]["conditional"][n], 4)
                                         for n in mean[s][e]} for e in ENCODINGS[1:]} for s in SAMPLERS},
        "ratio_nsga2_to_random": {e: {str(n): round(mean["nsga2"][e][n] / mean["random"][e][n], 4)
                                      for n in mean["nsga2"][e]} for e in ENCODINGS},
    }


def two_objectives(space: SearchSpace) -> SearchSpace:
    """``space`` searched for (accuracy, FLOPs) only: the synthetic score has no other objective (a space's
    ``params`` objective, as ``mobilenetv2_mixed`` has, is left out)."""
    if space.objectives == ("val_acc", "flops"):
        return space
    return dataclasses.replace(space, file=space.file.model_copy(update={"objectives": ["val_acc", "flops"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv2_ulsam")
    ap.add_argument("--proposals", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    space = two_objectives(load_space(args.space))
    t0 = time.time()
    out = {"space": args.space, "objectives": list(space.objectives), "proposals": args.proposals,
           "seeds": args.seeds}
    for name, means in OBJECTIVES.items():
        objective = SyntheticObjective(space, means)
        out["flops_additivity_checked_on"] = check_additive_flops(space, objective)
        out[name] = {"mean_gain_by_op": means, **compare(space, objective, args.proposals, args.seeds)}
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
