"""A trained trial out of its run folder: :func:`load_trial` rebuilds its arch with its trained weights, without
Ray (``nas_attn.load_trial``); imports torch when a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrialWeights:
    """Where a run folder keeps a trial's arch and weights."""

    run_dir: Path
    trial: int
    arch: Arch
    checkpoint: str


def find_trial(run_dir: str | Path, trial: int) -> TrialWeights:
    """A trial's arch and checkpoint, from the run's study (or its tables); one-line errors otherwise."""
    from nas_attn.results import open_run_study, trials_table
    from nas_attn.runfolder import RunFolder

    run_dir = Path(run_dir).expanduser().resolve()
    if not (run_dir / "manifest.json").is_file():
        raise NasAttnError(f"{run_dir}: not a nas-attn run folder (no manifest.json)")
    study = open_run_study(run_dir, RunFolder(run_dir, True).read_manifest())
    if study is not None:
        table = trials_table(study)
    elif (run_dir / "trials.parquet").is_file():
        import pandas as pd

        table = pd.read_parquet(run_dir / "trials.parquet")
    else:
        raise NasAttnError(f"{run_dir}: no trials recorded yet")
    rows = table[table["trial"] == trial]
    if rows.empty:
        raise NasAttnError(f"{run_dir}: no trial {trial} (trials: {', '.join(map(str, table['trial']))})")
    row = rows.iloc[0]
    if not isinstance(row.get("checkpoint"), str):
        raise NasAttnError(f"{run_dir}: trial {trial} ({row['status']}) has no weights: only trials that completed "
                           f"keep a checkpoint")
    return TrialWeights(run_dir, trial, Arch.from_json(row["arch"]), row["checkpoint"])


def load_trial(run_dir: str | Path, trial: int) -> torch.nn.Module:
    """The model of trial ``trial`` of the run in ``run_dir``, with its trained weights, in eval mode."""
    return model_of(find_trial(run_dir, trial))


def model_of(found: TrialWeights) -> torch.nn.Module:
    """The trial's model with its trained weights, in eval mode (the weights read first: a damaged checkpoint is
    told before the model is built)."""
    from nas_attn.build import build_model
    from nas_attn.checkpoints import put_state, read_state

    what = f"{found.run_dir}: trial {found.trial}"
    state = read_state(found.checkpoint, found.run_dir, what, found.arch)
    model = build_model(found.arch)
    put_state(model, state, found.checkpoint, what)
    return model.eval()
