"""What the dashboard shows of a run folder, read live from its Optuna study or from its tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError
from nas_attn.results import (
    HISTORY_COLUMNS,
    add_reeval_columns,
    empty_trials_table,
    front_table,
    history_table,
    hypervolume_history,
    load_front_eval,
    trials_table,
)


class DashboardError(NasAttnError):
    """A run folder that cannot be shown (missing or malformed file)."""


@dataclass
class RunData:
    """One run, ready for the page."""

    name: str
    run_dir: Path
    manifest: dict[str, Any]
    trials: pd.DataFrame
    history: pd.DataFrame
    front: pd.DataFrame
    positions: list[dict[str, Any]] = field(default_factory=list)
    study: Any = None

    @property
    def objectives(self) -> list[str]:
        return list(self.manifest.get("objectives", ["val_acc", "flops"]))

    def hypervolume(self, reference_point: list[float]) -> pd.DataFrame:
        """Optuna's hypervolume after each trial (needs the study; empty without it)."""
        if self.study is None or not len(self.trials):
            return pd.DataFrame(columns=["trial", "hypervolume"])
        try:
            return hypervolume_history(self.study, reference_point)
        except Exception as exc:  # e.g. a study without a complete trial
            raise DashboardError(f"{self.run_dir}: hypervolume: {exc}") from None


def _open_study(run_dir: Path, manifest: dict[str, Any]):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = manifest.get("storage") or ""
    journal = run_dir / "optuna.journal"
    if journal.is_file():  # the run folder's own journal, wherever the folder was moved
        backend = JournalStorage(JournalFileBackend(str(journal)))
    elif "://" in storage:
        backend = optuna.storages.RDBStorage(storage)
    else:
        return None
    try:
        return optuna.load_study(study_name=manifest.get("study_name") or manifest["space"], storage=backend)
    except KeyError:  # the search has not created its study yet
        return None


def load_run(run_dir: str | Path, name: str | None = None) -> RunData:
    """Read a results folder; raise :class:`DashboardError` in one line when it cannot be shown."""
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise DashboardError(f"{run_dir}: no such run folder")
    mpath = run_dir / "manifest.json"
    if not mpath.is_file():
        raise DashboardError(f"{run_dir}: not a nas-attn run folder (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise DashboardError(f"{mpath}: malformed ({exc})") from None
    try:
        study = _open_study(run_dir, manifest)
    except Exception as exc:
        raise DashboardError(f"{run_dir}: cannot open the Optuna study ({type(exc).__name__}: {exc})") from None
    try:
        if study is not None:
            trials = trials_table(study, load_front_eval(run_dir))
            history = history_table(study)
        elif (run_dir / "trials.parquet").is_file():
            trials = pd.read_parquet(run_dir / "trials.parquet")
            history = pd.read_parquet(run_dir / "history.parquet") if (run_dir / "history.parquet").is_file() \
                else pd.DataFrame(columns=HISTORY_COLUMNS)
        else:
            trials, history = empty_trials_table(), pd.DataFrame(columns=HISTORY_COLUMNS)
    except DashboardError:
        raise
    except Exception as exc:
        raise DashboardError(f"{run_dir}: cannot read the trials ({type(exc).__name__}: {exc})") from None
    front = add_reeval_columns(front_table(trials), load_front_eval(run_dir)) if len(trials) else trials.iloc[0:0]
    positions = _positions(trials)
    return RunData(name or f"{manifest.get('space', run_dir.parent.name)}/{run_dir.name}", run_dir, manifest, trials,
                   history, front, positions, study)


def _positions(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """The backbone's numbered layers (for the placement strip), from any trial's arch."""
    if not len(trials):
        return []
    arch = Arch.from_json(trials["arch"].iloc[0])
    return [p.as_dict() for p in Arch(arch.backbone, width=arch.width, input_size=arch.input_size,
                                       small_input=arch.small_input, in_chans=arch.in_chans).positions()]
