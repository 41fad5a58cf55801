"""One-shot evaluation: train a space's supernet once, then score any arch of the space without training it.

:func:`train_supernet` trains the supernet (:mod:`nas_attn.supernet`) with the space's recipe, one path per
step drawn uniformly (single-path one-shot). :func:`score_archs` scores archs on the validation split with the
shared weights, each after its BatchNorm statistics are re-estimated on its own path (SPOS, section 3.3: the
statistics a shared BatchNorm collects during training mix every path and mislead the ranking).

A score is a *prediction* of an arch's accuracy: what it ranks is checked against from-scratch training by
``scripts/bench_strategy.py`` (docs/search.md, "Evaluation strategies").
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from nas_attn.arch import Arch
from nas_attn.data import Splits
from nas_attn.data.loader import device_images
from nas_attn.recipe import Recipe
from nas_attn.space import SearchSpace
from nas_attn.supernet import build_supernet, clear_path, sample_path, set_path
from nas_attn.train import (
    Evaluation,
    Trainer,
    TrialFailed,
    evaluate,
    pick_device,
    recalibrate_batchnorm,
    seed_everything,
)


@dataclass(frozen=True)
class SupernetEpoch:
    """One epoch of supernet training: its mean training loss over the paths it drew, and its time."""

    epoch: int
    train_loss: float
    epoch_s: float


@dataclass
class TrainedSupernet:
    """A trained supernet with what scoring needs: its training images (BatchNorm re-estimation) and device."""

    net: nn.Module
    trainer: Trainer
    history: list[SupernetEpoch]


def train_supernet(space: SearchSpace, splits: Splits, recipe: Recipe | None = None, *, seed: int = 0,
                   device: torch.device | str | None = None, memory_budget: int | None = None,
                   report: Callable[[SupernetEpoch, Callable[[], dict]], None] | None = None,
                   resume: dict | None = None) -> TrainedSupernet:
    """Train the supernet of ``space`` for ``recipe.epochs`` (default: the space's recipe), drawing each
    step's path with :func:`~nas_attn.supernet.sample_path` from a generator seeded by ``seed``.

    ``report(epoch, state)`` is called after every epoch; ``state()`` gives everything a resume needs (weights,
    optimiser, schedule, every random generator: a search checkpoints it; its tensors are the live ones, to be
    saved before training goes on). ``resume``: such a state; training
    goes on from the epoch after it and ends with the weights an uninterrupted run would have.

    The supernet is never compiled (a compiled graph would be guarded on the path and recompiled for each).

    Raises:
        TrialFailed: a non-finite training loss.
    """
    recipe = replace(recipe or space.recipe, compile=False)
    device = pick_device(str(device) if device else None)
    seed_everything(seed)
    net = build_supernet(space)
    trainer = Trainer(space.base, splits, recipe, device, seed, memory_budget, model=net)
    paths = random.Random(seed)
    trainer.before_step = lambda: set_path(net, sample_path(space, paths))
    history: list[SupernetEpoch] = []
    if resume is not None:
        history = _restore(resume, trainer, paths)

    def state() -> dict:
        return {"epoch": len(history), "history": [asdict(h) for h in history], "model": net.state_dict(),
                "optimizer": trainer.opt.state_dict(), "scheduler": trainer.sched.state_dict(),
                "paths": paths.getstate(), "order": trainer.order_gen.get_state(), "augment": trainer.gen.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    for epoch in range(len(history) + 1, recipe.epochs + 1):
        e0 = time.perf_counter()
        loss_sum, _ = trainer.run_steps(trainer.steps_per_epoch)
        loss = float(loss_sum) / trainer.steps_per_epoch
        if not math.isfinite(loss):
            raise TrialFailed(f"supernet: non-finite training loss at epoch {epoch}")
        history.append(SupernetEpoch(epoch, loss, time.perf_counter() - e0))
        if report is not None:
            report(history[-1], state)
    clear_path(net)
    return TrainedSupernet(net, trainer, history)


def _restore(saved: dict, trainer: Trainer, paths: random.Random) -> list[SupernetEpoch]:
    """Put a saved training state back (:func:`train_supernet`'s ``state()``); its epochs so far."""
    trainer.model.load_state_dict(saved["model"])
    trainer.opt.load_state_dict(saved["optimizer"])
    trainer.sched.load_state_dict(saved["scheduler"])
    paths.setstate(saved["paths"])
    trainer.order_gen.set_state(saved["order"])
    trainer.gen.set_state(saved["augment"])
    torch.set_rng_state(saved["torch"])
    if saved.get("cuda") and torch.cuda.is_available():  # dropout and drop-path on a GPU draw from its generator
        torch.cuda.set_rng_state_all(saved["cuda"])
    return [SupernetEpoch(**h) for h in saved["history"]]


def load_supernet(space: SearchSpace, saved: dict, splits: Splits, recipe: Recipe | None = None, *,
                  device: torch.device | str | None = None, memory_budget: int | None = None) -> TrainedSupernet:
    """A supernet trained elsewhere, from its training ``state()`` (a search's checkpoint), ready to score."""
    recipe = replace(recipe or space.recipe, compile=False)
    device = pick_device(str(device) if device else None)
    net = build_supernet(space)
    net.load_state_dict(saved["model"])
    trainer = Trainer(space.base, splits, recipe, device, recipe.seed, memory_budget, model=net)
    return TrainedSupernet(net, trainer, [SupernetEpoch(**h) for h in saved["history"]])


def score_archs(trained: TrainedSupernet, archs: Sequence[Arch], splits: Splits, *, bn_images: int = 1024,
                batch_size: int = 256) -> list[Evaluation]:
    """Validation loss and accuracy of each arch on its supernet path, BatchNorm statistics re-estimated on
    ``bn_images`` training images for that path first. The supernet is left on the vanilla path."""
    net, trainer = trained.net, trained.trainer
    val, _ = device_images(splits.val, trainer.device, trainer.budget_left)
    # re-estimation resets every BatchNorm of the supernet (candidates off the path too): the trained statistics
    # are put back afterwards, so that a checkpoint or a path's weights taken later carry them
    saved = {k: v.clone() for k, v in net.state_dict().items() if _is_norm_buffer(k)}
    scores = []
    try:
        for arch in archs:
            set_path(net, arch)
            recalibrate_batchnorm(net, trainer.train, bn_images, trainer.batch_size, trainer.device, trainer.prep)
            scores.append(evaluate(net, val, batch_size, trainer.device, trainer.prep))
    finally:
        clear_path(net)
        net.load_state_dict(saved, strict=False)
    return scores


def _is_norm_buffer(key: str) -> bool:
    return key.rpartition(".")[2] in ("running_mean", "running_var", "num_batches_tracked")
