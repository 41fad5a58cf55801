"""``manifest.json`` of a run folder: what ran (command, space, versions, commit, data, budget, resources)
and every attempt's start and end. Written whole and atomically at the start and the end of an attempt."""

from __future__ import annotations

import json
from typing import Any

from nas_attn.plan import SearchPlan
from nas_attn.results import write_atomic
from nas_attn.runfolder import argv, git_commit, now, versions


def start_attempt(plan: SearchPlan, storage_url: str, data) -> dict[str, Any]:
    """Record a new attempt (the first, or a resume) and return the manifest as written.

    ``data``: the trials' :class:`~nas_attn.data.DataHandle` (split sizes, cache key).
    """
    space, res, info = plan.space, plan.resources, plan.dataset
    manifest = plan.run.read_manifest()
    manifest.update({
        "space": space.name, "space_file": str(space.path), "space_sha256": space.sha256, "run_id": plan.run.path.name,
        "study_name": space.name, "storage": storage_url, "objectives": list(space.objectives),
        "directions": space.directions, "versions": versions(), "git_commit": git_commit(),
        "tune_storage": plan.options.storage_path or "RUN_DIR/tune",
        "dataset": {"name": info.name, "source": info.source, "train": data.sizes[0], "val": data.sizes[1],
                    "test": data.sizes[2], "input_size": space.base.input_size, "stored_side": info.side,
                    "cache": info.cache, "cache_key": data.key, "mean": list(data.mean), "std": list(data.std),
                    "seed": space.recipe.seed},
        "budget": {"trials": space.trials, "epochs": space.recipe.epochs, "width": space.base.width,
                   "cpu_budget_applied": space.cpu_budget_applied, "note": plan.budget_note},
        "recipe": space.recipe.to_dict(), "sampler": space.sampler, "encoding": space.file.search.encoding,
        "asha": space.asha.model_dump() if space.asha else None,
        "resources": {"cpus_per_trial": res.cpus_per_trial, "gpus_per_trial": res.gpus_per_trial,
                      "concurrency": res.concurrency, "cluster": {"CPU": res.cluster_cpus, "GPU": res.cluster_gpus}},
        "status": "running",
    })
    manifest.setdefault("attempts", []).append({"command": argv(), "started": now(), "ended": None})
    write_atomic(plan.run.manifest_path, json.dumps(manifest, indent=2))
    return manifest


def end_attempt(plan: SearchPlan, manifest: dict[str, Any], status: str, **figures: Any) -> None:
    """Close the current attempt with ``status`` (``finished``, ``interrupted``, ``failed``)."""
    manifest["attempts"][-1].update(ended=now(), **figures)
    manifest["status"] = status
    write_atomic(plan.run.manifest_path, json.dumps(manifest, indent=2))
