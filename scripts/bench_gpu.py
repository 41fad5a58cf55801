"""GPU throughput of trials (prints JSON). Run it on a GPU machine; on a CPU it runs too, for a check only.

(a) images/s of one trial of the space's recipe (real data: on-device uint8 images, augmentation and
    normalisation) against the same model stepping on synthetic tensors already on the device (its ceiling);
(b) total images/s of real trials with 1, 2, 4, 8 trials per GPU (fractional GPUs through Ray), each as a
    ratio to the synthetic multi-process ceiling of the same model measured in the same run;
(c) median trial start-up (trial launched → first training step) from a short real search.

    python scripts/bench_gpu.py [--space mobilenetv2_ulsam] [--seconds 20] [--packings 1,2,4,8]
                                [--data-root DIR] [--startup-trials 8] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measure(arch_json: str, splits, recipe, seconds: float, synthetic: bool, barrier=None, threads: int = 1) -> dict:
    """Images/s of the trial training loop (``Trainer.run_steps``) or of its step on a fixed synthetic batch."""
    import ray
    import torch

    from nas_attn.arch import Arch
    from nas_attn.train import Trainer, pick_device

    torch.set_num_threads(threads)
    device = pick_device()

    # the schedule must outlast the timed window, however many steps fit in it
    trainer = Trainer(Arch.from_json(arch_json), splits, replace(recipe, epochs=100_000), device, seed=0)
    bs = trainer.batch_size
    if synthetic:
        x = torch.randn(bs, *splits.train_x.shape[1:], device=device)
        y = torch.randint(0, splits.num_classes, (bs,), device=device)

    def run(steps: int) -> None:
        if synthetic:
            for _ in range(steps):
                trainer.step(x, y)
        else:
            trainer.run_steps(steps)

    run(10)  # warm-up: cudnn autotuning, allocator, compile
    if device.type == "cuda":
        torch.cuda.synchronize()
    if barrier is not None:
        ray.get(barrier.wait.remote())  # every process starts its timed window together
    images, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run(20)
        if device.type == "cuda":
            torch.cuda.synchronize()
        images += 20 * bs
    return {"images": images, "seconds": time.perf_counter() - t0, "device": str(device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="mobilenetv2_ulsam")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--packings", default="1,2,4,8")
    ap.add_argument("--data-root")
    ap.add_argument("--batch-size", type=int, help="default: the space's recipe")
    ap.add_argument("--startup-trials", type=int, default=8, help="0 skips (c)")
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import torch

    from nas_attn.data import load_dataset, make_splits
    from nas_attn.space import RunSettings, load_space

    loaded = load_space(args.space)
    ds = load_dataset(loaded.dataset.name, args.data_root, loaded.base.input_size)
    space = loaded.for_run(RunSettings(compile=args.compile), cpu_budget=False, num_classes=ds.num_classes,
                           in_chans=ds.in_chans)  # the full budget's recipe and width, as on a GPU
    splits = make_splits(ds, space.dataset.val_fraction, 0, space.train_subset, space.val_subset)
    recipe = space.recipe.replace(batch_size=args.batch_size or space.recipe.batch_size)
    arch = space.base.to_json()
    cuda = torch.cuda.is_available()
    ray.init(address="local", include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self, n: int) -> None:
            self.n, self.arrived = n, 0

        async def wait(self) -> None:
            import asyncio

            self.arrived += 1
            while self.arrived < self.n:
                await asyncio.sleep(0.01)

    def packed(k: int, synthetic: bool) -> float:
        barrier = Barrier.remote(k)
        task = ray.remote(num_cpus=1, num_gpus=(1 / k) if cuda else 0)(measure)
        splits_ref = ray.put(splits)
        out = ray.get([task.remote(arch, splits_ref, recipe, args.seconds, synthetic, barrier) for _ in range(k)])
        return sum(o["images"] / o["seconds"] for o in out)

    single_real = ray.get(ray.remote(num_cpus=1, num_gpus=1 if cuda else 0)(measure).remote(
        arch, splits, recipe, args.seconds, False))
    single_syn = ray.get(ray.remote(num_cpus=1, num_gpus=1 if cuda else 0)(measure).remote(
        arch, splits, recipe, args.seconds, True))
    real_ips = single_real["images"] / single_real["seconds"]
    syn_ips = single_syn["images"] / single_syn["seconds"]
    packings = [int(k) for k in args.packings.split(",")]
    real_k, syn_k = {}, {}
    for k in packings:
        if not cuda and k > os.cpu_count():
            continue
        real_k[k], syn_k[k] = packed(k, False), packed(k, True)
    ceiling = max(syn_k.values())
    ray.shutdown()

    startup = None
    if args.startup_trials:
        best = max(real_k, key=real_k.get)
        with tempfile.TemporaryDirectory() as results:
            cmd = [sys.executable, str(REPO / "search.py"), "--space", args.space, "--trials", str(args.startup_trials),
                   "--epochs", "1", "--results-dir", results, "--run-id", "bench", "--quiet", "--full-budget",
                   "--gpus-per-trial", str(1 / best if cuda else 0)]
            if args.data_root:
                cmd += ["--data-root", args.data_root]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            import pandas as pd

            trials = pd.read_parquet(next(Path(results).glob("*/bench/trials.parquet")))
            startup = {"median_launch_to_first_step_s": round(float(trials["launch_s"].median()), 2),
                       "median_in_process_s": round(float(trials["startup_s"].median()), 2),
                       "trials": len(trials), "trials_per_gpu": best}
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name() if cuda else "cpu (check only)",
        "torch": torch.__version__, "space": args.space, "batch_size": recipe.batch_size,
        "data": f"{ds.source}: {len(splits.train_y)} training images", "compile": args.compile,
        "a_one_trial": {"real_images_per_s": round(real_ips), "synthetic_images_per_s": round(syn_ips),
                        "ratio": round(real_ips / syn_ips, 3)},
        "b_packing": {str(k): {"real_images_per_s": round(real_k[k]), "synthetic_images_per_s": round(syn_k[k]),
                               "ratio_to_synthetic_ceiling": round(real_k[k] / ceiling, 3)} for k in real_k},
        "b_synthetic_ceiling_images_per_s": round(ceiling),
        "c_startup": startup,
    }, indent=2))


if __name__ == "__main__":
    main()
