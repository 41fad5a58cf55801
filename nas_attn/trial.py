"""The worker side of a search: what runs in a Ray worker for one trial, one test evaluation, one retraining.

:func:`run_trial` is the Ray Tune function trainable. It builds the arch it is given, trains it with the
run's recipe, reports a :class:`~nas_attn.records.TrialReport` every epoch and checkpoints the final
weights with the last report. A failure inside training is reported as a result (``failed``, the first
line as the reason, the whole traceback kept), so that the search records it and goes on; only a lost
process or node reaches Tune as an error (and is retried).
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_attn.data import DataHandle
from nas_attn.fsutil import is_disk_full
from nas_attn.recipe import Recipe
from nas_attn.records import ArchScore, EpochStats, SupernetConfig, SupernetReport, TrialConfig, TrialReport


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a run shares (put once in Ray's object store by ``tune.with_parameters``).

    ``data`` is a handle, not the images: each trial opens the decoded cache on its own node.
    ``gpus_per_trial``: the share of a GPU a trial has, and so of its free memory for images.
    """

    recipe: Recipe
    data: DataHandle
    imports: tuple[str, ...] = ()
    threads: int = 1
    gpus_per_trial: float = 0.0
    #: measure each arch's latency before training (the space names ``latency_ms`` as an objective)
    measure_latency: bool = False
    #: the run folder, where checkpoints recorded as relative paths lie (weight inheritance, the supernet)
    run_dir: str = ""


def memory_budget(context: TrialContext, device: str) -> int:
    """Bytes of images this trial may hold on ``device``: the run's ``--device-data-gb``, or half of the
    trial's share of the memory free (its GPU fraction; on a CPU its threads over the node's cores)."""
    import torch

    from nas_attn.data.loader import default_memory_budget

    if context.data.memory_budget is not None:
        return context.data.memory_budget
    cuda = device == "cuda"
    share = (context.gpus_per_trial or 1.0) if cuda else context.threads / (os.cpu_count() or 1)
    return default_memory_budget(torch.device(device), share)


def _placement(threads: int) -> tuple[str, dict[str, str]]:
    """The torch device of this trial ("cuda" when Ray gave it a GPU) and where it runs, for the tables."""
    import ray
    import torch

    gpu = torch.cuda.is_available() and bool(ray.get_gpu_ids())
    where = {"node": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
             "device": torch.cuda.get_device_name() if gpu else f"cpu x{threads}"}
    return ("cuda" if gpu else "cpu"), where


def prepare_worker(context: TrialContext) -> None:
    """A worker's threads, and the modules the space imports (which register extra attention modules)."""
    import torch

    torch.set_num_threads(context.threads)
    for name in context.imports:  # modules that register extra attention modules (the space's imports:)
        importlib.import_module(name)


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune function trainable: train one arch, report every epoch, checkpoint the final weights."""
    t0 = time.perf_counter()
    _reporting_failure(context, lambda device, where: _train_and_report(TrialConfig.from_config(config), context,
                                                                       device, where, t0))


def _reporting_failure(context: TrialContext, body: Callable[[str, dict[str, Any]], None]) -> None:
    """Run ``body(device, where)`` in a Tune trial's worker; what it raises is reported as the trial's failure
    (its first line and traceback: the search records it and goes on). ``where`` (node, device, and what
    ``body`` adds to it in place) goes with the failure."""
    from ray import tune

    where: dict[str, Any] = {}
    # here, not on the way out: a trial that Tune stops leaves through SystemExit, whose frames hold its tensors
    give_back_memory()
    try:
        prepare_worker(context)
        device, placed = _placement(context.threads)
        where.update(placed)
        body(device, where)
    except Exception as exc:
        tune.report(failure_report(exc, where).to_result())


def give_back_memory() -> None:
    """Return what the worker's last trial freed to the system before this one starts (Tune reuses workers).

    glibc keeps freed memory in its heaps; without this a reused worker starts each trial from the last one's
    high-water mark (scripts/bench_search.py measures the peaks). ``malloc_trim`` is glibc's (no library
    wraps it); elsewhere nothing is done."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): its allocator manages on its own
        pass


def failure_report(exc: BaseException, where: dict[str, Any]) -> TrialReport:
    """A failed trial's report: its first line as the reason (the type added for bugs), the whole traceback."""
    from nas_attn.train import TrialFailed

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = first if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {first}".rstrip(": ")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TrialReport(failed=True, disk_full=is_disk_full(exc), reason=reason[:500], traceback=text, **where)


def _train_and_report(trial: TrialConfig, context: TrialContext, device: str, where: dict[str, Any],
                      t0: float) -> None:
    from ray import tune

    from nas_attn.arch import Arch
    from nas_attn.checkpoints import save_checkpoint
    from nas_attn.train import train_arch

    arch = Arch.from_json(trial.arch)
    # in place: the failure report of run_trial carries what was counted and measured before a failure
    where.update(_cost(trial, arch))
    if context.measure_latency:
        where["latency_ms"] = _latency(arch, device)
    recipe = context.recipe if trial.epochs is None else context.recipe.compressed(trial.epochs)
    start_from = None if trial.start_from is None else _vanilla_weights(trial.start_from, arch, context)
    startup: list[float] = []

    def report(stats: EpochStats, model) -> None:
        if not startup:  # trial start to its first training step
            startup.append(round(time.perf_counter() - t0 - stats.epoch_s, 3))
        last = stats.epoch == recipe.epochs
        record = TrialReport(epoch=stats, completed=last, startup_s=startup[0], **where,
                             train_s=round(time.perf_counter() - t0, 3) if last else None)
        if not last:
            tune.report(record.to_result())
            return
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(Path(folder), model.state_dict(), trial.arch)
            tune.report(record.to_result(), checkpoint=tune.Checkpoint.from_directory(folder))

    train_arch(arch, context.data.open(), recipe, seed=trial.seed, device=device, report=report,
               memory_budget=memory_budget(context, device), start_from=start_from)


def _vanilla_weights(uri: str, arch, context: TrialContext):
    """The vanilla trial's weights for an arch that inherits them: its checkpoint must be this arch's backbone
    with the same settings (``arch.json`` is checked, not only the tensors' shapes)."""
    import dataclasses

    from nas_attn.checkpoints import read_state

    vanilla = dataclasses.replace(arch, placements=[])
    return read_state(uri, Path(context.run_dir), "the vanilla trial", vanilla)


def _cost(trial: TrialConfig, arch) -> dict[str, int]:
    """The arch's params and FLOPs: the driver's count, or counted here where the driver did not need it
    before training (which keeps torch out of the driver: nas_attn/searcher.py)."""
    if trial.params is not None and trial.flops is not None:
        return {"params": trial.params, "flops": trial.flops}
    from nas_attn.complexity import complexity

    return complexity(arch)


def _latency(arch, device: str) -> float:
    from nas_attn.build import build_model
    from nas_attn.latency import measure_latency_ms

    return round(measure_latency_ms(build_model(arch), (1, arch.in_chans, arch.input_size, arch.input_size),
                                    device), 4)


def evaluate_checkpoint(arch_json: str, uri: str, run_dir: str, context: TrialContext) -> dict[str, float]:
    """Top-1 and top-5 test accuracy of a trial's final weights (a Ray task: runs where the resources are)."""

    from nas_attn.arch import Arch
    from nas_attn.checkpoints import load_weights
    from nas_attn.train import pick_device, test_accuracy

    prepare_worker(context)
    device = pick_device()
    weights = load_weights(uri, Path(run_dir))
    scores = test_accuracy(Arch.from_json(arch_json), weights, context.data.open(), device,
                           memory_budget=memory_budget(context, device.type))
    return {"test_acc": scores.top1, "test_top5": scores.top5}


def retrain(arch_json: str, context: TrialContext, seed: int) -> tuple[float, float]:
    """(validation, test) accuracy of the arch trained again with ``seed`` (``--reevaluate-front``)."""
    from nas_attn.arch import Arch
    from nas_attn.train import pick_device, test_accuracy, train_arch

    prepare_worker(context)
    arch, splits, device = Arch.from_json(arch_json), context.data.open(), pick_device()
    budget = memory_budget(context, device.type)
    res = train_arch(arch, splits, context.recipe, seed=seed, device=device, keep_weights=True, memory_budget=budget)
    return res.history[-1].val_acc, test_accuracy(arch, res.state_dict, splits, device, memory_budget=budget).top1


# -- the one-shot strategy: the supernet's training (one Tune trial) and the scoring of archs (Ray tasks) --------

def run_supernet(config: dict[str, Any], context: TrialContext, space) -> None:
    """Ray Tune function trainable: train the supernet of ``space``, checkpointing its whole training state every
    epoch (a killed search resumes from the last one: ``config["resume"]``, or Tune's own after a lost worker). A
    failure is reported: the driver stops the search with its reason and keeps the traceback."""
    _reporting_failure(context, lambda device, where: _train_supernet(SupernetConfig.from_config(config), context,
                                                                      space, device, where))


def _train_supernet(config: SupernetConfig, context: TrialContext, space, device: str, where: dict) -> None:
    from ray import tune

    from nas_attn.checkpoints import load_weights, save_state
    from nas_attn.oneshot import train_supernet

    resume = None
    retried = tune.get_checkpoint()  # Tune runs the trial again after a lost worker: from its last epoch
    if retried is not None:
        with retried.as_directory() as folder:
            resume = load_weights(str(folder), Path(folder))
    elif config.resume is not None:
        resume = load_weights(config.resume, Path(context.run_dir))
    recipe = context.recipe.compressed(config.epochs)

    def report(epoch, state) -> None:
        result = SupernetReport(epoch.epoch, epoch.train_loss, epoch.epoch_s, epoch.epoch == config.epochs, **where)
        with tempfile.TemporaryDirectory() as folder:
            save_state(Path(folder), state(), space.base.to_json())
            tune.report(result.to_result(), checkpoint=tune.Checkpoint.from_directory(folder))

    train_supernet(space, context.data.open(), recipe, seed=config.seed, device=device, report=report,
                   resume=resume, memory_budget=memory_budget(context, device))


def score_with_supernet(archs: list[str], uri: str, context: TrialContext, space, bn_images: int) -> list[ArchScore]:
    """Validation accuracy of each arch (JSON) on its path of the trained supernet ``uri``, BatchNorm re-estimated
    on ``bn_images`` training images, with its counted cost (a Ray task). Failures are returned, not raised: an
    arch that fails is recorded as failed with its traceback and the others keep their scores; a task that cannot
    load the supernet returns its failure for every arch (the driver runs those archs again)."""
    where: dict[str, Any] = {}
    try:
        prepare_worker(context)
        device, where = _placement(context.threads)
        trained, splits = _load_supernet(uri, context, space, device)
    except Exception as exc:
        return [ArchScore.failure(failure_report(exc, where), task=True)] * len(archs)
    out = []
    try:
        for text in archs:
            try:
                out.append(_score(text, trained, splits, bn_images, where))
            except Exception as exc:  # this arch's failure, recorded with its traceback; the batch goes on
                out.append(ArchScore.failure(failure_report(exc, where)))
    finally:  # the worker is kept for the next task: the supernet and its images go, and the GPU's cache
        del trained, splits
        _empty_cuda_cache()
    return out


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _load_supernet(uri: str, context: TrialContext, space, device: str):
    from nas_attn.checkpoints import load_weights
    from nas_attn.oneshot import load_supernet

    splits = context.data.open()
    trained = load_supernet(space, load_weights(uri, Path(context.run_dir)), splits, context.recipe, device=device,
                            memory_budget=memory_budget(context, device))
    return trained, splits


def _score(text: str, trained, splits, bn_images: int, where: dict) -> ArchScore:
    from nas_attn.arch import Arch
    from nas_attn.complexity import complexity
    from nas_attn.oneshot import score_archs

    t0 = time.perf_counter()
    arch = Arch.from_json(text)
    score = score_archs(trained, [arch], splits, bn_images=bn_images)[0]
    return ArchScore(val_acc=score.top1, val_top5=score.top5, val_loss=score.loss, **complexity(arch),
                     score_s=round(time.perf_counter() - t0, 3), **where)
