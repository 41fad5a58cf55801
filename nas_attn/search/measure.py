"""After the trials: the front's test accuracy (and its re-evaluation with more seeds), then its heatmaps.
Imports Ray (through :mod:`nas_attn.front`): the driver imports this module only once the input is checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ray
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nas_attn.errors import NasAttnError
from nas_attn.front import evaluate_front, gather, reevaluate_front
from nas_attn.heatmaps import heatmap_trials, make_heatmaps
from nas_attn.plan import SearchPlan
from nas_attn.probes import HeatmapImages, heatmap_images
from nas_attn.results import front_table, load_front_eval, trials_table
from nas_attn.stopping import StopRequest
from nas_attn.trial import TrialContext, prepare_worker


def measure_front(plan: SearchPlan, study, context, say: Callable[[str], None], stop: StopRequest) -> None:
    """Test accuracy of the front (and its re-evaluation with more seeds), once the search is over."""
    trials = trials_table(study, load_front_eval(plan.run.path))
    front = front_table(trials)
    # nas-attn train: every seed's test accuracy, for their mean and spread (one arch: the "front" is one seed)
    evaluate_front(study, trials[trials["status"] == "complete"] if plan.space.fixed else front, plan, context,
                   say, stop)
    reevaluate_front(study, front, plan, context, say, stop)
    stop.check("the front is measured; its heatmaps were not made")
    make_front_heatmaps(plan, study, context, say, stop)


def make_front_heatmaps(plan: SearchPlan, study, context: TrialContext, say: Callable[[str], None],
                        stop: StopRequest, images: int = 8) -> None:
    """Grad-CAM heatmaps of the vanilla trial and the front on a few fixed test images (for the dashboard).

    Drawn by a Ray task on the driver's node (it writes in the run folder, as the driver would), usually in a
    worker that the test measurement has warmed: the driver itself does not import torch, timm or grad-cam
    for them (issue 23: the driver peaked 280 MB higher while it drew them). They are the dashboard's extra:
    whatever stops them (missing weights, a lost worker) is one line, and the search's results stand."""
    trials = heatmap_trials(trials_table(study))
    if not trials:
        return
    splits = context.data.open()
    chosen = heatmap_images(splits.test, splits.mean, splits.std, plan.dataset.class_names,
                            plan.space.base.input_size, images)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(num_cpus=0, scheduling_strategy=here)(draw_heatmaps)  # no CPU: trials are over
    ref = task.remote(str(plan.run.path), trials, chosen, context)
    gather([ref], stop)
    try:
        ray.get(ref)
    except RayError as exc:  # e.g. weights on a worker's disk this node cannot read
        cause = exc.cause if isinstance(exc, RayTaskError) and isinstance(exc.cause, NasAttnError) else exc
        reason = str(cause).strip().splitlines()[-1][:300] if str(cause).strip() else type(cause).__name__
        say(f"heatmaps: not made ({reason}); `nas-attn heatmaps {plan.run.path}` makes them where the weights are")
        return
    say(f"heatmaps: trials {', '.join(map(str, trials))} on {images} test images in {plan.run.path.name}/heatmaps")


def draw_heatmaps(run_dir: str, trials: list[int], images: HeatmapImages, context: TrialContext) -> None:
    """The Ray task of :func:`make_front_heatmaps`."""
    prepare_worker(context)
    make_heatmaps(Path(run_dir), trials, images)
