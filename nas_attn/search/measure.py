"""After the trials: the front's test accuracy (and its re-evaluation with more seeds), then its heatmaps.
Imports Ray (through :mod:`nas_attn.front`): the driver imports this module only once the input is checked."""

from __future__ import annotations

from collections.abc import Callable

from nas_attn.data import Splits
from nas_attn.errors import NasAttnError
from nas_attn.front import evaluate_front, reevaluate_front
from nas_attn.heatmaps import heatmap_trials, make_heatmaps
from nas_attn.plan import SearchPlan
from nas_attn.probes import heatmap_images
from nas_attn.results import front_table, load_front_eval, trials_table
from nas_attn.stopping import StopRequest


def measure_front(plan: SearchPlan, study, context, say: Callable[[str], None], stop: StopRequest) -> None:
    """Test accuracy of the front (and its re-evaluation with more seeds), once the search is over."""
    trials = trials_table(study, load_front_eval(plan.run.path))
    front = front_table(trials)
    # nas-attn train: every seed's test accuracy, for their mean and spread (one arch: the "front" is one seed)
    evaluate_front(study, trials[trials["status"] == "complete"] if plan.space.fixed else front, plan, context,
                   say, stop)
    reevaluate_front(study, front, plan, context, say, stop)
    stop.check("the front is measured; its heatmaps were not made")
    make_front_heatmaps(plan, study, context.data.open(), say)


def make_front_heatmaps(plan: SearchPlan, study, splits: Splits, say: Callable[[str], None], images: int = 8) -> None:
    """Grad-CAM heatmaps of the vanilla trial and the front on a few fixed test images (for the dashboard)."""
    trials = heatmap_trials(trials_table(study))
    if not trials:
        return
    chosen = heatmap_images(splits.test, splits.mean, splits.std, plan.dataset.class_names,
                            plan.space.base.input_size, images)
    try:
        make_heatmaps(plan.run.path, trials, chosen)
    except NasAttnError as exc:  # e.g. weights on a worker's disk the driver cannot read: the rest stands
        say(f"heatmaps: not made ({exc}); `nas-attn heatmaps {plan.run.path}` makes them where the weights are")
        return
    say(f"heatmaps: trials {', '.join(map(str, trials))} on {images} test images in {plan.run.path.name}/heatmaps")
