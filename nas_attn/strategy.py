"""Evaluation strategies: how a search scores the archs its sampler proposes (torch-free).

- ``scratch`` (default): every arch is trained from scratch with the space's recipe.
- ``inherit``: the vanilla backbone is trained once (the first trial); every other arch starts from its weights
  for the layers it keeps (:mod:`nas_attn.weights`) and is fine-tuned for ``inherit_epochs``.
- ``oneshot``: one supernet holding every choice (:mod:`nas_attn.supernet`) is trained once for
  ``supernet_epochs``, sampling a path per step; each proposed arch is then scored on the validation split on
  its path, BatchNorm re-estimated on ``bn_images`` training images (:mod:`nas_attn.oneshot`).

Both cheaper strategies give *predictions*. The ``retrain_top_k`` archs of the predicted front are then trained
from scratch as ordinary trials (``retrain_of`` names the prediction they check), and only trained figures
enter ``front.csv``. docs/search.md says when each strategy is worth it and what its ranking was measured at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

#: the ``evaluation`` attribute of a trial (``None`` in runs older than the strategies: ``scratch``)
EVALUATIONS = ("scratch", "inherit", "oneshot")
#: evaluations whose accuracy is a prediction, never a trained figure
PREDICTED = frozenset({"inherit", "oneshot"})

StrategyName = Literal["scratch", "inherit", "oneshot"]


@dataclass(frozen=True)
class Strategy:
    """A run's evaluation strategy, its defaults resolved against the run's recipe (``Strategy.resolve``)."""

    name: StrategyName = "scratch"
    #: inherit: epochs each arch is fine-tuned for (default: half the recipe's, at least 1)
    inherit_epochs: int = 1
    #: oneshot: epochs the supernet trains for (default: three times the recipe's, the cost of three trainings)
    supernet_epochs: int = 1
    #: archs of the predicted front trained from scratch afterwards
    retrain_top_k: int = 4
    #: oneshot: archs the sampler proposes and the supernet scores (default: 16 times the trials budget)
    scored: int = 1
    #: oneshot: training images BatchNorm statistics are re-estimated on, per arch
    bn_images: int = 1024
    #: oneshot: archs one scoring task takes (it loads the supernet once)
    score_batch: int = 8

    @classmethod
    def resolve(cls, given: dict[str, Any], recipe_epochs: int, trials: int) -> Strategy:
        """``given``: the space file's ``strategy:`` keys that were set (and a flag's name over them); the
        defaults follow the run's recipe and trials budget."""
        values = {k: v for k, v in given.items() if v is not None}
        values.setdefault("inherit_epochs", max(1, recipe_epochs // 2))
        values.setdefault("supernet_epochs", 3 * recipe_epochs)
        values.setdefault("scored", 16 * trials)
        return cls(**values)

    @property
    def predicts(self) -> bool:
        """Its candidates' accuracies are predictions (and its predicted front is retrained)."""
        return self.name in PREDICTED

    @property
    def evaluation(self) -> str:
        """The ``evaluation`` attribute of the trials it predicts."""
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.name == "inherit":
            return (f"inherit (fine-tune {self.inherit_epochs} epoch(s) from the vanilla trial; retrain top "
                    f"{self.retrain_top_k})")
        if self.name == "oneshot":
            return (f"oneshot (supernet {self.supernet_epochs} epoch(s); {self.scored} archs scored, BatchNorm on "
                    f"{self.bn_images} images; retrain top {self.retrain_top_k})")
        return "scratch"


def is_prediction(evaluation: Any) -> bool:
    """Whether a trial's ``evaluation`` attribute (or table cell) marks a prediction."""
    return isinstance(evaluation, str) and evaluation in PREDICTED


def pick_for_retraining(candidates: Sequence[tuple[int, Sequence[float]]], objectives: Sequence[str],
                        k: int) -> list[int]:
    """The numbers of up to ``k`` predictions to retrain: the predicted Pareto front first, then the next fronts
    (non-dominated sorting); where a front holds more than the places left, points spread evenly along it by
    FLOPs (else the first cost objective), its ends (the cheapest and the most accurate) always in, the most
    accurate alone where one place is left. Deterministic: the same candidates give the same picks.

    ``candidates``: (trial number, objective values in the order of ``objectives``); ``val_acc`` is maximised,
    every other objective (a cost) minimised. Written here because Optuna exposes only the first front
    (``Study.best_trials``), and of a whole study.
    """
    acc = list(objectives).index("val_acc")
    cost = list(objectives).index("flops") if "flops" in objectives else next(
        i for i, o in enumerate(objectives) if o != "val_acc")
    signs = [-1.0 if o == "val_acc" else 1.0 for o in objectives]
    left = {n: tuple(s * float(v) for s, v in zip(signs, values, strict=True)) for n, values in candidates}
    picked: list[int] = []
    while left and len(picked) < k:
        front = sorted((n for n in left if not any(_dominates(left[m], left[n]) for m in left if m != n)),
                       key=lambda n: (left[n][cost], left[n][acc], n))
        need = k - len(picked)
        if len(front) > need:
            front = [min(front, key=lambda n: (left[n][acc], n))] if need == 1 else [
                front[round(i * (len(front) - 1) / (need - 1))] for i in range(need)]
        picked += front
        for n in front:
            del left[n]
    return picked


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (all objectives minimised): no worse in every one, better in one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))
