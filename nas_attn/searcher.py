"""Ray Tune's ``OptunaSearch`` with what a multi-objective NAS needs on top.

- Trials stopped early by ASHA reach Optuna as PRUNED, not as COMPLETE with their low-fidelity accuracy
  (Ray's integration does the latter), so they never enter the front.
- Trials whose training failed (non-finite loss, out of memory, an exception) are recorded as FAIL with
  their reason; the search continues.
- Archs over a constraint (``max_flops`` …) are refused at suggestion time: recorded, never trained.
- Everything a trial leaves (arch, cost, per-epoch history, timings, node, device) is stored as Optuna user
  attributes *before* its state is told, so the study alone rebuilds every table after a kill.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from nas_attn.arch import Arch
from nas_attn.complexity import complexity
from nas_attn.results import STATUS_COMPLETE, STATUS_FAILED, STATUS_INFEASIBLE, STATUS_PRUNED
from nas_attn.space import SearchSpace

#: consecutive refused archs after which the constraints are declared too tight for the space
MAX_CONSECUTIVE_INFEASIBLE = 200
_EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_s", "train_images_per_s")


class NasOptunaSearch(OptunaSearch):
    """``OptunaSearch`` in multi-objective mode over a :class:`SearchSpace` (define-by-run)."""

    def __init__(self, space: SearchSpace, *, sampler: optuna.samplers.BaseSampler,
                 storage: optuna.storages.BaseStorage, study_name: str, seed_base: int, checkpoint_root: str,
                 epochs: int) -> None:
        super().__init__(space=space.suggest, metric=list(space.objectives),
                         mode=["max" if d == "maximize" else "min" for d in space.directions],
                         sampler=sampler, storage=storage, study_name=study_name)
        self.nas_space = space
        self.seed_base = seed_base
        self.checkpoint_root = checkpoint_root
        self.epochs = epochs
        self.too_tight: str | None = None
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._started: dict[str, float] = {}
        self._costs: dict[str, dict[str, int]] = {}
        self._restarts: dict[str, int] = {}

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def _cost(self, arch_json: str) -> dict[str, int]:
        if arch_json not in self._costs:
            self._costs[arch_json] = complexity(Arch.from_json(arch_json))
        return self._costs[arch_json]

    def suggest(self, trial_id: str) -> dict | None:
        for _ in range(MAX_CONSECUTIVE_INFEASIBLE):
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            arch = Arch.from_json(config["arch"])
            cost = self._cost(config["arch"])
            attrs = {"arch": config["arch"], "params": cost["params"], "flops": cost["flops"],
                     "tune_trial_id": trial_id}
            reason = self.nas_space.violations(arch, cost)
            if reason is None:
                seed = self.seed_base + ot_trial.number
                attrs.update(seed=seed, checkpoint=f"{self.checkpoint_root}/{trial_id}")
                _set_attrs(ot_trial, attrs)
                self._started[trial_id] = time.time()
                return {**config, "trial_number": ot_trial.number, "seed": seed}
            # over a constraint: recorded, never trained, and not counted against the trial budget
            _set_attrs(ot_trial, {**attrs, "status": STATUS_INFEASIBLE, "reason": reason})
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            del self._ot_trials[trial_id]
        self.too_tight = (f"{MAX_CONSECUTIVE_INFEASIBLE} consecutive sampled archs broke the constraints "
                          f"(last: {reason}); loosen constraints or narrow the space")
        return Searcher.FINISHED

    def note_restart(self, trial_id: str) -> None:
        """Tune restarts a trial whose process or node was lost (``FailureConfig``): count it."""
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._restarts[trial_id] = self._restarts.get(trial_id, 0) + 1
            self._ot_trials[trial_id].set_user_attr("restarts", self._restarts[trial_id])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if "epoch" not in result:
            return
        rows = self._history.setdefault(trial_id, [])
        if not rows and trial_id in self._started and trial_id in self._ot_trials:
            # driver's view of start-up: trial launched → first training step (actor, imports, data, model)
            launch = time.time() - self._started[trial_id] - result.get("epoch_s", 0.0)
            self._ot_trials[trial_id].set_user_attr("launch_s", round(launch, 3))
        # a trial retried after a node failure starts again at epoch 1: drop the lost attempt's epochs
        rows[:] = [r for r in rows if r["epoch"] < result["epoch"]]
        rows.append({k: result[k] for k in _EPOCH_KEYS if k in result})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        history = self._history.pop(trial_id, [])
        accs = [h["val_acc"] for h in history if "val_acc" in h]
        attrs: dict[str, Any] = {
            "history": history, "epochs_run": len(history),
            "val_acc_best": max(accs) if accs else None, "val_acc_final": accs[-1] if accs else None,
            "wall_s": round(time.time() - self._started.pop(trial_id, time.time()), 3),
            **{k: result[k] for k in ("node", "node_id", "device", "startup_s", "train_s") if k in result},
        }
        values = None
        if error:
            state, attrs["status"] = TrialState.FAIL, STATUS_FAILED
            attrs["reason"] = "the trial's Ray worker failed (process or node lost); see the Tune trial's error.txt"
        elif result.get("failed"):
            state, attrs["status"], attrs["reason"] = TrialState.FAIL, STATUS_FAILED, result.get("reason", "failed")
        elif not result.get("completed"):
            state, attrs["status"] = TrialState.PRUNED, STATUS_PRUNED
            attrs["reason"] = f"stopped early by ASHA after {len(history)} of {self.epochs} epochs"
        else:
            state, attrs["status"] = TrialState.COMPLETE, STATUS_COMPLETE
            values = [result[m] for m in self.metric]
        _set_attrs(ot_trial, attrs)
        self._ot_study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)


def _set_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
