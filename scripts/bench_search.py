"""Per-trial overhead and search throughput of a real search (default: the smoke space, Ray local).

overhead = a trial's wall time (launch → result recorded) minus its time in training steps;
throughput = finished trials per hour of search wall time. Prints JSON.

    python scripts/bench_search.py [--space smoke] [--trials 8] [--gpus-per-trial 0.25] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nas_attn.runfolder import MANIFEST, read_manifest

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="smoke")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--gpus-per-trial", type=float)
    ap.add_argument("--data-root")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as results:
        cmd = [sys.executable, str(REPO / "search.py"), "--space", args.space, "--trials", str(args.trials),
               "--results-dir", results, "--run-id", "bench", "--quiet"]
        for flag, value in (("--epochs", args.epochs), ("--gpus-per-trial", args.gpus_per_trial),
                            ("--data-root", args.data_root)):
            if value is not None:
                cmd += [flag, str(value)]
        t0 = time.time()
        subprocess.run(cmd, check=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, stdout=subprocess.DEVNULL)
        total_s = time.time() - t0
        run = next(Path(results).glob("*/bench"))
        trials = pd.read_parquet(run / "trials.parquet")
        history = pd.read_parquet(run / "history.parquet")
        manifest = read_manifest(run / MANIFEST)
    # time in training steps: training images of an epoch / its measured training throughput
    images, bs = manifest.dataset.train, manifest.recipe["batch_size"]
    history["step_s"] = (images // bs * bs) / history["train_images_per_s"]
    step_s = history.groupby("trial")["step_s"].sum()
    done = trials[trials["status"].isin(["complete", "pruned", "failed"])].set_index("trial")
    overhead = done["wall_s"] - step_s.reindex(done.index).fillna(0)
    search_s = manifest.attempts[-1].search_s
    print(json.dumps({
        "space": args.space, "device": str(done["device"].iloc[0]), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs", "trials": len(done), "concurrency": manifest.resources["concurrency"],
        "epochs": manifest.recipe["epochs"], "train_images": images,
        "per_trial_overhead_s": {"median": round(float(overhead.median()), 2),
                                 "mean": round(float(overhead.mean()), 2)},
        "per_trial_wall_s_median": round(float(done["wall_s"].median()), 2),
        "per_trial_training_steps_s_median": round(float(step_s.median()), 2),
        "launch_to_first_step_s_median": round(float(np.nanmedian(done["launch_s"].astype(float))), 2),
        "in_process_startup_s_median": round(float(np.nanmedian(done["startup_s"].astype(float))), 2),
        "search_wall_s": search_s, "trials_per_hour": round(len(done) / search_s * 3600, 1),
        "whole_command_s": round(total_s, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
