"""The run folder of a search: claimed (created if new, locked) before anything else, checked, then prepared
for an attempt; a new one that bad input stopped before its first attempt is removed again."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nas_attn.arch import Arch
from nas_attn.errors import NasAttnError
from nas_attn.fsutil import write_atomic
from nas_attn.plan import SearchOptions, SearchPlan
from nas_attn.results import load_front_eval
from nas_attn.runfolder import MANIFEST, RAY_LOG, SPACE_COPY, RunFolder, check_resumable
from nas_attn.search.process import ProcessSettings
from nas_attn.space import SearchSpace
from nas_attn.storage import RunLock, check_journal, check_study_present, repair_journal


@contextmanager
def claimed(run: RunFolder) -> Iterator[RunLock]:
    """The run folder, created if new and locked for this search, at once: a second search on it is refused
    before it loads data or starts Ray.

    A folder created here that holds no manifest on the way out (bad input, or a stop, before the first
    attempt was recorded) is removed, with the parents created for it: a refused search leaves nothing.
    """
    created = _first_missing(run.path)
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasAttnError(f"--results-dir {run.path.parent.parent}: cannot create {run.path} "
                           f"({exc.strerror or exc})") from None
    lock = RunLock(run.path).acquire()  # another search holds it: one line, and this search has removed nothing
    try:
        yield lock
    finally:
        # Still locked: everything in a folder this search created, before its manifest, is this search's.
        if created is not None and not (run.path / MANIFEST).exists():
            _remove_created(run.path, created)
        lock.release()


def _first_missing(path: Path) -> Path | None:
    """The outermost of ``path`` and its parents that does not exist yet (``None``: ``path`` exists)."""
    missing = None
    for p in [path, *path.parents]:
        if p.exists():
            return missing
        missing = p
    return missing


def _remove_created(path: Path, created: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    for parent in path.parents:
        if parent == created.parent:
            break
        try:
            parent.rmdir()  # only if empty: another run may have appeared beside this one
        except OSError:
            break


def check_run_files(run: RunFolder, space: SearchSpace, options: SearchOptions) -> None:
    """A run folder's files, read as the search will read them but writing nothing, before Ray starts: damage
    (or a changed space file) is one line now, not after Ray started or the trials trained."""
    manifest = run.read_manifest()
    check_resumable(run, manifest, space.path, space.sha256)
    if run.resuming:
        _check_same_arch(run, manifest.arch, options.arch)
        _check_same_recipe(run, manifest.recipe_changes or {}, options.recipe_changes())
        _check_same_strategy(run, (manifest.strategy or {}).get("name", "scratch"),
                             options.strategy or space.file.strategy.name)
        recorded = manifest.dataset.input_size if manifest.dataset else None
        if recorded is not None and recorded != space.base.input_size:
            raise NasAttnError(f"{run.path}: this run trains at {recorded} px, not {space.base.input_size} px; "
                               f"resume it at its size, or start a new run (another --run-id)")
    if not options.storage:
        check_journal(run.journal)
        if run.resuming:
            check_study_present(run.path, run.journal, manifest)
    load_front_eval(run.path)


def _check_same_arch(run: RunFolder, recorded: str | None, given: str | None) -> None:
    """A resumed run trains what it started with: the same network (:meth:`Arch.network_key`), or a search."""
    def key(text: str | None) -> str | None:
        return None if text is None else Arch.from_json(text).network_key()

    if key(recorded) != key(given):
        trains = "is a search" if recorded is None else f"trains {Arch.from_json(recorded).short()}"
        raise NasAttnError(f"{run.path}: this run {trains}, not the arch given now; start a new run (another "
                           f"--run-id)")


def _check_same_strategy(run: RunFolder, recorded: str, given: str) -> None:
    """A resumed run evaluates its archs as it started: its predictions and their retraining belong together."""
    if recorded != given:
        raise NasAttnError(f"{run.path}: this run evaluates archs with strategy {recorded}, not {given}; resume it "
                           f"with --strategy {recorded}, or start a new run (another --run-id)")


def _check_same_recipe(run: RunFolder, recorded: dict[str, Any], given: dict[str, Any]) -> None:
    """A resumed ``nas-attn train`` trains its new seeds with the ``--recipe`` settings of the first ones."""
    def shown(changes: dict[str, Any]) -> str:
        return " ".join(f"--recipe {k}={json.dumps(v)}" for k, v in changes.items()) or "no --recipe"

    if json.loads(json.dumps(recorded)) != json.loads(json.dumps(given)):  # JSON's lists for tuples
        raise NasAttnError(f"{run.path}: this run trains with {shown(recorded)}, not {shown(given)}; resume it "
                           f"with the same settings, or start a new run (another --run-id)")


def prepare_run_folder(plan: SearchPlan, settings: ProcessSettings, say: Callable[[str], None]) -> None:
    """The (claimed) run folder ready for an attempt: Ray's log records sent there, a resumed run's journal
    repaired and checked, the space file copied."""
    settings.log_ray_to(plan.run.path / RAY_LOG)
    if plan.run.resuming and not plan.options.storage:
        repair_journal(plan.run.journal, say)
        check_study_present(plan.run.path, plan.run.journal, plan.run.read_manifest())
    if not (plan.run.path / SPACE_COPY).exists():
        write_atomic(plan.run.path / SPACE_COPY, plan.space.path.read_text())
