"""Measured latency: an arch's median forward time at batch 1 on the device that trains it.

FLOPs and latency disagree for these modules (softmax over positions, pooling, grouped and depthwise
convolutions cost time that multiply-adds do not count), so a space may name ``latency_ms`` as an objective
beside ``flops``; the trial measures it once, before training.
"""

from __future__ import annotations

from typing import Any


def measure_latency_ms(model: Any, input_shape: tuple[int, ...], device: Any = "cpu",
                       min_run_time: float = 0.5) -> float:
    """Median forward latency of ``model`` on one input of ``input_shape`` (batch 1), in milliseconds.

    ``torch.utils.benchmark.Timer`` times it after a warm-up (cuDNN's autotuning, the allocator), in eval
    mode without autograd, synchronising CUDA around each block of runs; ``min_run_time`` seconds of runs.
    """
    import torch
    from torch.utils import benchmark

    model = model.eval().to(device)
    x = torch.randn(*input_shape, device=device)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x},
                                num_threads=torch.get_num_threads())
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return float(measurement.median * 1e3)
