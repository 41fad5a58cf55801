"""One trial: build an arch, train it with a recipe on device-resident or streamed data, evaluate, report per epoch."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from nas_attn.arch import Arch
from nas_attn.build import build_model
from nas_attn.data import Splits
from nas_attn.data.augment import centre_crop, pad_crop_flip, random_resized_crop
from nas_attn.data.loader import DeviceImages, StreamedImages, batch_slices, default_memory_budget, device_images
from nas_attn.recipe import Recipe
from nas_attn.records import EpochStats
from nas_attn.weights import inherit_weights


class TrialFailed(RuntimeError):
    """A trial could not finish (non-finite loss, out of memory, …); its message is the recorded reason."""


@dataclass
class TrainResult:
    history: list[EpochStats] = field(default_factory=list)
    startup_s: float = 0.0
    train_s: float = 0.0
    device: str = "cpu"
    #: the training images were streamed from the cache (over the device-memory budget)
    streamed: bool = False
    state_dict: dict[str, torch.Tensor] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Preprocess:
    """uint8 batch → the model's input: centre crop to the input size (evaluation) and normalisation.

    ``(x/255 - mean)/std`` as one multiply-add on the device.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: int, device: torch.device) -> None:
        c = len(mean)
        std_t = torch.tensor(std, device=device).view(1, c, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, device=device).view(1, c, 1, 1) / std_t
        self.size = size

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalise(centre_crop(x, self.size))


def augment(x: torch.Tensor, padding: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a uint8 batch (:func:`pad_crop_flip`)."""
    return pad_crop_flip(x, padding, hflip, gen)


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracies over a split."""

    loss: float
    top1: float
    top5: float


def correct_counts(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How many rows have their label as the highest score, and among the five highest (all, when fewer
    classes); both stay on the device."""
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = top == y.view(-1, 1)
    return hits[:, 0].sum(), hits.any(1).sum()


def _optimizer(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # no weight decay on BN and biases
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if r.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=r.lr)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


def make_scheduler(opt: torch.optim.Optimizer, r: Recipe, steps_per_epoch: int) -> LRScheduler:
    """The recipe's learning-rate schedule, stepped after every training step.

    ``step`` and ``multistep`` decay at epoch boundaries counted from the start (warm-up included), as the
    papers' recipes; ``warmup_epochs`` ramps the rate linearly, ``(t + 1) / W`` of it at step ``t`` of ``W``.
    """
    sched = torch.optim.lr_scheduler
    total = r.epochs * steps_per_epoch
    warmup = min(total, int(round(r.warmup_epochs * steps_per_epoch)))
    if r.schedule == "onecycle" and total >= 4:
        # OneCycleLR divides by zero when its warm-up phase rounds to under two steps
        return sched.OneCycleLR(opt, max_lr=r.lr, total_steps=total, pct_start=max(0.25, 2.5 / total))
    constant = sched.LambdaLR(opt, lambda _: 1.0) if r.schedule in ("onecycle", "constant") else None
    if r.schedule == "cosine":
        main: LRScheduler = sched.CosineAnnealingLR(opt, T_max=max(1, total - warmup))
    elif r.schedule == "step":
        main = sched.StepLR(opt, step_size=r.step_epochs * steps_per_epoch, gamma=r.gamma)
    elif r.schedule == "multistep":
        main = sched.MultiStepLR(opt, milestones=[m * steps_per_epoch for m in r.milestones], gamma=r.gamma)
    elif constant is not None:  # onecycle here: too short to warm up, a constant rate
        main = constant
    else:
        raise ValueError(f"unknown schedule {r.schedule!r}")
    if warmup < 1:
        return main
    warm = sched.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=max(1, warmup - 1))
    if constant is not None:  # LambdaLR sets the rate outright, which would undo the warm-up: warm-up alone
        return warm
    if r.schedule == "cosine":  # the cosine starts where the warm-up ends
        return sched.SequentialLR(opt, [warm, main], milestones=[warmup])
    return sched.ChainedScheduler([warm, main], optimizer=opt)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: DeviceImages, images: int, batch_size: int,
                          device: torch.device, prep: Preprocess) -> None:
    """Recompute BatchNorm running statistics as exact averages over the first ``images`` training images
    (seen as in evaluation: ``prep``)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or images <= 0:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    n = min(images, len(data))
    for x, _ in data.batches(None, [s for s in batch_slices(n, batch_size, drop_last=False) if s.stop - s.start > 1]):
        x = _layout(prep(x), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model(x)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


#: the largest evaluation batch on a CPU. A CPU's kernels are saturated long before (a GPU's are not, so there
#: the recipe's ``eval_batch_size`` holds), while activations grow with the batch: MobileNetV2 at 32 px, 1,000
#: images on one thread, took 7.2 s and peaked at 2,004 MB at batch 1024, 4.5 s and 960 MB at 64
#: (2026-12-06, this project's 2-core machine). Accuracy does not depend on the batch (eval mode).
CPU_EVAL_BATCH = 64


def eval_batch_size(batch_size: int, device: torch.device) -> int:
    """The batch that evaluation runs at on ``device`` (:data:`CPU_EVAL_BATCH` at most on a CPU)."""
    return min(batch_size, CPU_EVAL_BATCH) if device.type == "cpu" else batch_size


def _layout(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceImages, batch_size: int, device: torch.device,
             prep: Preprocess) -> Evaluation:
    """Loss, top-1 and top-5 accuracy over ``data`` (centre crops) in batches of ``batch_size`` (at most
    :data:`CPU_EVAL_BATCH` on a CPU); the model is left in eval mode."""
    model.eval()
    batch_size = eval_batch_size(batch_size, device)
    loss_sum = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    for x, y in data.batches(None, batch_slices(len(data), batch_size, drop_last=False)):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(_layout(prep(x), device))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        right1, right5 = correct_counts(logits, y)
        top1 += right1
        top5 += right5
    n = max(1, len(data))
    return Evaluation(float(loss_sum) / n, float(top1) / n, float(top5) / n)


@dataclass(frozen=True)
class TrainJob:
    """One :func:`train_arch` call, its arguments resolved (the seed chosen, the device picked)."""

    arch: Arch
    splits: Splits
    recipe: Recipe
    seed: int
    device: torch.device
    report: Callable[[EpochStats, nn.Module], None] | None
    keep_weights: bool
    #: ``time.perf_counter()`` when the call began: the start-up time counts from it
    started: float
    memory_budget: int | None
    #: the vanilla backbone's state dict whose kept layers the model starts from (weight inheritance)
    start_from: dict[str, torch.Tensor] | None = None


def train_arch(
    arch: Arch,
    splits: Splits,
    recipe: Recipe,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
    report: Callable[[EpochStats, nn.Module], None] | None = None,
    keep_weights: bool = False,
    memory_budget: int | None = None,
    start_from: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``arch`` on ``splits.train`` and validate on ``splits.val`` every epoch.

    On CUDA: bf16 autocast and channels_last. ``report(stats, model)`` is called after every epoch (Ray
    Tune's report in a search; the last call may checkpoint the model). Images are held on the device when
    they fit ``memory_budget`` bytes (default: :func:`~nas_attn.data.loader.default_memory_budget`), else
    streamed from the cache. ``start_from``: the state dict of the vanilla backbone (this arch without
    placements), whose weights every layer the arch keeps starts from (:func:`~nas_attn.weights.inherit_weights`).
    Raises :class:`TrialFailed` on a non-finite loss or when the device runs out of memory.
    """
    t0 = time.perf_counter()
    device = pick_device(str(device) if device else None)
    seed = recipe.seed if seed is None else seed
    seed_everything(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        return _train(TrainJob(arch, splits, recipe, seed, device, report, keep_weights, t0, memory_budget,
                               start_from))
    except torch.OutOfMemoryError as exc:
        raise TrialFailed(f"out of memory on {device}: {str(exc).splitlines()[0]}") from None


class Trainer:
    """A model, its optimiser and schedule, and its training images: a trial's inner loop.

    ``run_steps`` is what a trial times as training; ``step`` alone, on a fixed batch, is the synthetic
    ceiling that ``scripts/bench_gpu.py`` and ``scripts/bench_data.py`` compare it with. The batch order
    is drawn on the host (the streaming thread reads it there), the augmentation on the device.
    """

    def __init__(self, arch: Arch, splits: Splits, recipe: Recipe, device: torch.device, seed: int,
                 memory_budget: int | None = None, model: nn.Module | None = None,
                 start_from: dict[str, torch.Tensor] | None = None) -> None:
        self.recipe, self.device = recipe, device
        #: called before every step (a supernet draws the path the step trains: nas_attn/oneshot.py)
        self.before_step: Callable[[], None] | None = None
        model = build_model(arch) if model is None else model
        if start_from is not None:
            inherit_weights(model, start_from)
        self.model = model.to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if recipe.compile else self.model
        budget = default_memory_budget(device) if memory_budget is None else memory_budget
        self.train, self.budget_left = device_images(splits.train, device, budget)
        self.prep = Preprocess(splits.mean, splits.std, arch.input_size, device)
        self.batch_size = min(recipe.batch_size, len(self.train))
        self.steps_per_epoch = max(1, len(self.train) // self.batch_size)  # drop the last incomplete batch
        self.opt = _optimizer(self.model, recipe)
        self.sched = make_scheduler(self.opt, recipe, self.steps_per_epoch)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.order_gen = torch.Generator().manual_seed(seed)

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, StreamedImages)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 batch augmented as the recipe says and normalised, on the device."""
        r = self.recipe
        if r.augment == "random_resized_crop":
            x = random_resized_crop(x, self.prep.size, r.rrc_scale, r.rrc_ratio, r.hflip, self.gen)
        else:
            x = pad_crop_flip(centre_crop(x, self.prep.size), r.crop_padding, r.hflip, self.gen)
        return self.prep.normalise(x)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step (bf16 autocast and channels_last on CUDA); returns (loss, correct) on device."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.step_model(_layout(x, self.device))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.recipe.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def run_steps(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``steps`` steps over a fresh permutation; (summed loss, correct) stay on the device (no sync)."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        order = torch.randperm(len(self.train), generator=self.order_gen)
        for x, y in self.train.batches(order, batch_slices(len(self.train), self.batch_size, steps)):
            if self.before_step is not None:
                self.before_step()
            loss, right = self.step(self.augment(x), y)
            loss_sum += loss
            correct += right
        return loss_sum, correct


def _train(job: TrainJob) -> TrainResult:
    recipe, device = job.recipe, job.device
    trainer = Trainer(job.arch, job.splits, recipe, device, job.seed, job.memory_budget, start_from=job.start_from)
    model, prep = trainer.model, trainer.prep
    val, _ = device_images(job.splits.val, device, trainer.budget_left)
    steps, bs = trainer.steps_per_epoch, trainer.batch_size
    result = TrainResult(device=str(device), streamed=trainer.streamed)
    for epoch in range(1, recipe.epochs + 1):
        e0 = time.perf_counter()
        if epoch == 1:
            result.startup_s = e0 - job.started
        loss_sum, correct = trainer.run_steps(steps)
        train_loss = float(loss_sum) / steps  # one device sync per epoch
        train_s = time.perf_counter() - e0
        result.train_s += train_s
        if not math.isfinite(train_loss):
            raise TrialFailed(f"non-finite training loss at epoch {epoch}")
        recalibrate_batchnorm(model, trainer.train, recipe.bn_recalibration, recipe.batch_size, device, prep)
        ev = evaluate(model, val, recipe.eval_batch_size, device, prep)
        stats = EpochStats(epoch, train_loss, float(correct) / (steps * bs), ev.loss, ev.top1,
                           trainer.sched.get_last_lr()[0], time.perf_counter() - e0, steps * bs / train_s, ev.top5)
        result.history.append(stats)
        if job.report is not None:
            job.report(stats, model)
    if job.keep_weights:
        result.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return result


def test_accuracy(arch: Arch, state_dict: dict[str, torch.Tensor], splits: Splits, device=None,
                  batch_size: int = 1024, memory_budget: int | None = None) -> Evaluation:
    """Loss, top-1 and top-5 accuracy of trained weights on the held-out test set (once per front arch)."""
    device = pick_device(str(device) if device else None)
    model = build_model(arch)
    model.load_state_dict(state_dict)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    budget = default_memory_budget(device) if memory_budget is None else memory_budget
    test, _ = device_images(splits.test, device, budget)
    return evaluate(model, test, batch_size, device, Preprocess(splits.mean, splits.std, arch.input_size, device))
