"""What the dashboard shows of a run folder, read live from its Optuna study or from its tables."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError
from nas_attn.heatmaps import UNREADABLE, HeatmapImages, TrialHeatmaps
from nas_attn.records import FrontEval, Manifest
from nas_attn.results import (
    HISTORY_COLUMNS,
    add_reeval_columns,
    empty_trials_table,
    front_table,
    history_table,
    hypervolume_history,
    load_front_eval,
    open_run_study,
    trials_table,
)
from nas_attn.runfolder import MANIFEST, read_manifest


class DashboardError(NasAttnError):
    """A run folder that cannot be shown (missing or malformed file)."""


@dataclass
class RunData:
    """One run, ready for the page."""

    name: str
    run_dir: Path
    manifest: Manifest
    trials: pd.DataFrame
    history: pd.DataFrame
    front: pd.DataFrame
    positions: list[dict[str, Any]] = field(default_factory=list)
    study: Any = None
    #: heatmaps of the vanilla trial and the front (``nas_attn.heatmaps``), by trial; and their images
    heatmaps: dict[int, TrialHeatmaps] = field(default_factory=dict)
    heatmap_images: HeatmapImages | None = None

    @property
    def objectives(self) -> list[str]:
        return self.manifest.objective_names

    def hypervolume(self, reference_point: list[float]) -> pd.DataFrame:
        """Optuna's hypervolume after each trial (needs the study; empty without it)."""
        if self.study is None or not len(self.trials):
            return pd.DataFrame(columns=["trial", "hypervolume"])
        try:
            return hypervolume_history(self.study, reference_point)
        except Exception as exc:  # e.g. a study without a complete trial
            raise DashboardError(f"{self.run_dir}: hypervolume: {exc}") from None


def load_run(run_dir: str | Path, name: str | None = None) -> RunData:
    """Read a results folder; raise :class:`DashboardError` in one line when it cannot be shown."""
    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise DashboardError(f"{run_dir}: no such run folder")
    manifest = _manifest(run_dir)
    try:
        study = open_run_study(run_dir, manifest)
    except Exception as exc:
        raise DashboardError(f"{run_dir}: cannot open the Optuna study ({type(exc).__name__}: {exc})") from None
    front_eval = load_front_eval(run_dir)
    trials, history = _tables(run_dir, study, front_eval)
    try:
        front = add_reeval_columns(front_table(trials), front_eval) if len(trials) else trials.iloc[0:0]
        positions = _positions(trials)
    except (NasAttnError, KeyError, ValueError, TypeError) as exc:
        raise DashboardError(f"{run_dir}: cannot show the trials ({type(exc).__name__}: {exc})") from None
    images, heatmaps = _heatmaps(run_dir, trials)
    return RunData(name or f"{manifest.space or run_dir.parent.name}/{run_dir.name}", run_dir, manifest, trials,
                   history, front, positions, study, heatmaps, images)


def _manifest(run_dir: Path) -> Manifest:
    mpath = run_dir / MANIFEST
    if not mpath.is_file():
        raise DashboardError(f"{run_dir}: not a nas-attn run folder (no manifest.json)")
    try:
        return read_manifest(mpath)
    except NasAttnError as exc:
        raise DashboardError(str(exc)) from None


#: the columns of the tables that the page reads (``trials.parquet`` and ``history.parquet`` of a run folder
#: whose study is elsewhere)
TRIALS_COLUMNS = ("trial", "status", "arch", "placements", "params", "flops", "val_acc_final", "vanilla")
HISTORY_READ = ("trial", "epoch")


def _tables(run_dir: Path, study, front_eval: dict[int, FrontEval]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trials and the per-epoch history: from the study, else from the tables a finished search wrote."""
    if study is not None:
        try:
            return trials_table(study, front_eval), history_table(study)
        except Exception as exc:  # a study that Optuna reads but whose records are not a search's
            raise DashboardError(f"{run_dir}: cannot read the trials ({type(exc).__name__}: {exc})") from None
    empty = (empty_trials_table(), pd.DataFrame(columns=HISTORY_COLUMNS))
    trials = _read_table(run_dir / "trials.parquet", TRIALS_COLUMNS, empty[0])
    _check_archs(run_dir / "trials.parquet", trials)
    return trials, _read_table(run_dir / "history.parquet", HISTORY_READ, empty[1])


def _check_archs(path: Path, trials: pd.DataFrame) -> None:
    """Every trial's arch must parse: the page draws each one."""
    for trial, arch in zip(trials["trial"], trials["arch"], strict=True):
        try:
            Arch.from_json(arch if isinstance(arch, str) else "null")
        except NasAttnError as exc:
            raise DashboardError(f"{path}: trial {trial}: {exc}") from None


def _read_table(path: Path, columns: tuple[str, ...], default: pd.DataFrame) -> pd.DataFrame:
    if not path.is_file():
        return default
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own errors on a file that is not parquet
        raise DashboardError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DashboardError(f"{path}: missing column(s) {', '.join(missing)}: not a table nas-attn wrote")
    if len(table) and not pd.api.types.is_integer_dtype(table["trial"]):
        raise DashboardError(f"{path}: column trial must hold trial numbers (integers), got {table['trial'].dtype}")
    return table


def _heatmaps(run_dir: Path, trials: pd.DataFrame) -> tuple[HeatmapImages | None, dict[int, TrialHeatmaps]]:
    try:
        images = HeatmapImages.load(run_dir)
        found = {int(t): TrialHeatmaps.load(run_dir, int(t)) for t in trials["trial"]} if images is not None else {}
    except UNREADABLE as exc:
        raise DashboardError(f"{run_dir}/heatmaps: unreadable ({type(exc).__name__}: {exc})") from None
    # heatmaps drawn on other images than the recorded ones (a folder edited by hand) are left out, not misdrawn
    return images, {t: h for t, h in found.items() if h is not None and images.drawn_on(h)}


def _positions(trials: pd.DataFrame) -> list[dict[str, Any]]:
    """The backbone's numbered layers (for the placement strip), from any trial's arch."""
    if not len(trials):
        return []
    return [p.as_dict() for p in dataclasses.replace(Arch.from_json(trials["arch"].iloc[0]), placements=[]).positions()]
