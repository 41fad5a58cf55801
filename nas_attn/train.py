"""One trial: build an arch, train it with a recipe on device-resident data, evaluate, report per epoch."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas_attn.arch import Arch, build_model
from nas_attn.data import Splits
from nas_attn.recipe import Recipe
from nas_attn.records import EpochStats


class TrialFailed(RuntimeError):
    """A trial could not finish (non-finite loss, out of memory, …); its message is the recorded reason."""


@dataclass
class TrainResult:
    history: list[EpochStats] = field(default_factory=list)
    startup_s: float = 0.0
    train_s: float = 0.0
    device: str = "cpu"
    state_dict: dict[str, torch.Tensor] | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(prefer: str | None = None) -> torch.device:
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DeviceData:
    """uint8 images held on the training device; batches, augmentation and normalisation happen there.

    No DataLoader and no per-step host→device copies: a small dataset fits in device memory several times.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, mean, std, device: torch.device) -> None:
        self.x = torch.as_tensor(np.require(x, requirements="W")).to(device, non_blocking=True)
        self.y = torch.as_tensor(y).to(device, non_blocking=True)
        c = self.x.shape[1]
        std_t = torch.tensor(std, device=device).view(1, c, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)  # (x/255 - mean)/std as one multiply-add
        self.shift = -torch.tensor(mean, device=device).view(1, c, 1, 1) / std_t

    def __len__(self) -> int:
        return len(self.y)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)


def augment(x: torch.Tensor, padding: int, hflip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a uint8 batch, on its device."""
    b, c, h, w = x.shape
    dev = x.device
    if padding:
        xp = F.pad(x, (padding,) * 4)
        oy = torch.randint(0, 2 * padding + 1, (b, 1), device=dev, generator=gen)
        ox = torch.randint(0, 2 * padding + 1, (b, 1), device=dev, generator=gen)
        rows = (oy + torch.arange(h, device=dev)).view(b, 1, h, 1).expand(b, c, h, w + 2 * padding)
        x = xp.gather(2, rows)  # (b, c, h, w + 2p): the crop's rows
        cols = (ox + torch.arange(w, device=dev)).view(b, 1, 1, w).expand(b, c, h, w)
        x = x.gather(3, cols)
    if hflip:
        flip = torch.rand(b, device=dev, generator=gen) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    return x


def _optimizer(model: nn.Module, r: Recipe) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # no weight decay on BN and biases
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if r.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=r.lr, momentum=r.momentum, nesterov=r.nesterov and r.momentum > 0)
    if r.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=r.lr)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


def _scheduler(opt: torch.optim.Optimizer, r: Recipe, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if r.schedule == "onecycle" and steps >= 4:
        # OneCycleLR divides by zero when its warm-up phase rounds to under two steps
        warmup = max(0.25, 2.5 / steps)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps, pct_start=warmup)
    if r.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if r.schedule in ("onecycle", "constant"):  # onecycle here: too short to warm up, a constant rate
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"unknown schedule {r.schedule!r}")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: DeviceData, images: int, batch_size: int,
                          device: torch.device) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``images`` training images."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or images <= 0:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    n = min(images, len(data))
    for i in range(0, n - 1, batch_size):
        x = data.normalise(data.x[i: min(n, i + batch_size)])
        if len(x) < 2:
            break
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model(x)
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int, device: torch.device) -> tuple[float, float]:
    """(loss, accuracy) over ``data``; the model is left in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for i in range(0, len(data), batch_size):
        x = data.normalise(data.x[i: i + batch_size])
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        y = data.y[i: i + batch_size]
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = max(1, len(data))
    return float(loss_sum) / n, float(correct) / n


def train_arch(
    arch: Arch,
    splits: Splits,
    recipe: Recipe,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
    report: Callable[[EpochStats, nn.Module], None] | None = None,
    keep_weights: bool = False,
) -> TrainResult:
    """Train ``arch`` on ``splits.train_*`` and validate on ``splits.val_*`` every epoch.

    On CUDA: bf16 autocast and channels_last. ``report(stats, model)`` is called after every epoch (Ray
    Tune's report in a search; the last call may checkpoint the model). Raises :class:`TrialFailed` on a
    non-finite loss or when the device runs out of memory.
    """
    t0 = time.perf_counter()
    device = pick_device(str(device) if device else None)
    seed = recipe.seed if seed is None else seed
    seed_everything(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        return _train(arch, splits, recipe, seed, device, report, keep_weights, t0)
    except torch.OutOfMemoryError as exc:
        raise TrialFailed(f"out of memory on {device}: {str(exc).splitlines()[0]}") from None


class Trainer:
    """A model, its optimiser and schedule, and its training data on the device: a trial's inner loop.

    ``run_steps`` is what a trial times as training; ``step`` alone, on a fixed batch, is the synthetic
    ceiling that ``scripts/bench_gpu.py`` compares it with.
    """

    def __init__(self, arch: Arch, splits: Splits, recipe: Recipe, device: torch.device, seed: int) -> None:
        self.recipe, self.device = recipe, device
        self.model = build_model(arch).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if recipe.compile else self.model
        self.train = DeviceData(splits.train_x, splits.train_y, splits.mean, splits.std, device)
        self.batch_size = min(recipe.batch_size, len(self.train))
        self.steps_per_epoch = max(1, len(self.train) // self.batch_size)  # drop the last incomplete batch
        self.opt = _optimizer(self.model, recipe)
        self.sched = _scheduler(self.opt, recipe, recipe.epochs * self.steps_per_epoch)
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented, normalised images and their labels, all on the device."""
        r = self.recipe
        return self.train.normalise(augment(self.train.x[idx], r.crop_padding, r.hflip, self.gen)), self.train.y[idx]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step (bf16 autocast and channels_last on CUDA); returns (loss, correct) on device."""
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.step_model(x)
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
        perm = torch.randperm(len(self.train), device=self.device, generator=self.gen)
        bs = self.batch_size
        for s in range(steps):
            loss, right = self.step(*self.batch(perm[(s % self.steps_per_epoch) * bs:][:bs]))
            loss_sum += loss
            correct += right
        return loss_sum, correct


def _train(arch, splits, recipe, seed, device, report, keep_weights, t0) -> TrainResult:
    trainer = Trainer(arch, splits, recipe, device, seed)
    model = trainer.model
    val = DeviceData(splits.val_x, splits.val_y, splits.mean, splits.std, device)
    steps, bs = trainer.steps_per_epoch, trainer.batch_size
    result = TrainResult(device=str(device))
    for epoch in range(1, recipe.epochs + 1):
        e0 = time.perf_counter()
        if epoch == 1:
            result.startup_s = e0 - t0
        loss_sum, correct = trainer.run_steps(steps)
        train_loss = float(loss_sum) / steps  # one device sync per epoch
        train_s = time.perf_counter() - e0
        result.train_s += train_s
        if not math.isfinite(train_loss):
            raise TrialFailed(f"non-finite training loss at epoch {epoch}")
        recalibrate_batchnorm(model, trainer.train, recipe.bn_recalibration, recipe.batch_size, device)
        val_loss, val_acc = evaluate(model, val, recipe.eval_batch_size, device)
        stats = EpochStats(epoch, train_loss, float(correct) / (steps * bs), val_loss, val_acc,
                           trainer.sched.get_last_lr()[0], time.perf_counter() - e0, steps * bs / train_s)
        result.history.append(stats)
        if report is not None:
            report(stats, model)
    if keep_weights:
        result.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return result


def test_accuracy(arch: Arch, state_dict: dict[str, torch.Tensor], splits: Splits, device=None,
                  batch_size: int = 1024) -> float:
    """Accuracy of trained weights on the held-out test set (used once per front arch)."""
    device = pick_device(str(device) if device else None)
    model = build_model(arch)
    model.load_state_dict(state_dict)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    test = DeviceData(splits.test_x, splits.test_y, splits.mean, splits.std, device)
    return evaluate(model, test, batch_size, device)[1]
