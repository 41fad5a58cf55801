"""Writes ``manifest.json`` of a run folder (:class:`nas_attn.records.Manifest`): what ran (command, space,
versions, commit, data, budget, resources) and every attempt's start and end. Written whole and atomically at
the start and the end of an attempt; the one writer of the file."""

from __future__ import annotations

from typing import Any

from nas_attn.fsutil import write_atomic
from nas_attn.plan import SearchPlan
from nas_attn.records import Attempt, DatasetRecord, Manifest
from nas_attn.runfolder import argv, git_commit, now, versions
from nas_attn.storage import hide_password

#: the status of an attempt that never closed itself (SIGKILL, a lost machine), set by the next attempt
KILLED = "killed"


def start_attempt(plan: SearchPlan, storage_url: str, data) -> Manifest:
    """Record a new attempt (the first, or a resume) and return the manifest as written.

    An earlier attempt still open was killed without notice: it is closed as ``killed``, with the study's
    counts as it left them (nothing has run since). ``data``: the trials' :class:`~nas_attn.data.DataHandle`
    (split sizes, cache key).
    """
    space, res, info = plan.space, plan.resources, plan.dataset
    manifest = plan.run.read_manifest()
    attempts = [a.model_copy(update={"status": KILLED, "counts": study_counts(plan, manifest)}) if a.open else a
                for a in manifest.attempts]
    study_name = manifest.study_name or (space.name if manifest.attempts else plan.new_study_name)
    manifest = manifest.model_copy(update={
        "space": space.name, "space_file": str(space.path), "space_sha256": space.sha256, "run_id": plan.run.path.name,
        "study_name": study_name, "storage": hide_password(storage_url),
        "objectives": list(space.objectives),
        "directions": list(space.directions), "versions": versions(), "git_commit": git_commit(),
        "tune_storage": plan.options.storage_path or "RUN_DIR/tune",
        "dataset": DatasetRecord(
            name=info.name, source=info.source, train=data.sizes[0], val=data.sizes[1], test=data.sizes[2],
            input_size=space.base.input_size, stored_side=info.side, cache=info.cache, cache_key=data.key,
            mean=[float(m) for m in data.mean], std=[float(s) for s in data.std], seed=space.recipe.seed),
        "budget": {"trials": space.trials, "epochs": space.recipe.epochs, "width": space.base.width,
                   "cpu_budget_applied": space.cpu_budget_applied, "note": plan.budget_note},
        "recipe": space.recipe.to_dict(), "sampler": space.sampler, "encoding": space.file.search.encoding,
        "asha": space.asha.model_dump() if space.asha else None,
        "resources": {"cpus_per_trial": res.cpus_per_trial, "gpus_per_trial": res.gpus_per_trial,
                      "concurrency": res.concurrency, "cluster": {"CPU": res.cluster_cpus, "GPU": res.cluster_gpus}},
        "status": "running", "arch": manifest.arch or plan.options.given_arch(),  # a resume trains what it started
        "recipe_changes": plan.options.recipe_changes() or None,
        "numbering": space.base.numbering_record(),
        "strategy": space.strategy.to_dict(),
        "attempts": [*attempts, Attempt(command=_shown_command(), started=now())],
    })
    write_atomic(plan.run.manifest_path, manifest.to_json())
    return manifest


def end_attempt(plan: SearchPlan, manifest: Manifest, status: str, counts: dict[str, int] | None = None,
                **figures: Any) -> None:
    """Close the current attempt of ``manifest`` (changed in place) with ``status`` (``finished``,
    ``interrupted``, ``failed``) and the study's trials by status (``counts``; read from the study if not
    given, left out where it cannot be read)."""
    if counts is None:
        counts = study_counts(plan, manifest)
    manifest.attempts[-1] = manifest.attempts[-1].model_copy(
        update={"ended": now(), "status": status, "counts": counts, **figures})
    manifest.status = status
    write_atomic(plan.run.manifest_path, manifest.to_json())


def study_counts(plan: SearchPlan, manifest: Manifest) -> dict[str, int] | None:
    """The run's trials by status, from its study (``None`` where there is no study, or it cannot be read)."""
    from nas_attn.results import open_run_study, status_counts, trials_table

    try:
        study = open_run_study(plan.run.path, manifest)
        return None if study is None else status_counts(trials_table(study))
    except Exception:  # best effort: the figures are a record, the attempt's status is what matters
        return None


def _shown_command() -> list[str]:
    """The command line as recorded: a ``--storage`` URL without its password."""
    return [_hidden(a) for a in argv()]


def _hidden(arg: str) -> str:
    flag, eq, value = arg.partition("=")
    if eq and flag.startswith("--") and "://" in value:  # --storage=URL
        return f"{flag}={hide_password(value)}"
    return hide_password(arg) if "://" in arg else arg
