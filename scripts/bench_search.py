"""Per-trial overhead, throughput and memory of a real search, beside a plain loop that trains the same archs
without Ray or Optuna (the floor), in one run. Prints JSON (issue 23).

- overhead = a trial's wall time (launch → result recorded) minus its time in training steps, split into the
  machinery (wall minus its epochs: launch → first step, last epoch → result recorded) and the evaluation
  inside the epochs (BatchNorm re-estimation and validation);
- throughput = finished trials per hour of search wall time;
- memory = the peak resident set (``VmHWM`` of ``/proc/<pid>/status``) of the driver and of each process that
  ran a trial (a Ray worker whose title named the trainable; Tune reuses workers, so a figure is a process's,
  over the trials it ran), and of all the search's processes together (the largest sum of ``Pss`` seen, so
  that the memory-mapped cache and Ray's shared object store count once), sampled every 0.2 s;
- where a worker's memory goes (``worker_memory``): in one fresh process, like a trial's, the peak resident
  set after importing what a trial imports and building the run's largest arch, then the tensors one training
  step of it saves for the backward pass at the recipe's batch; and each process's peak anonymous memory
  (``RssAnon``: what one more packed trial costs, since the library pages in the resident set are shared with
  every other process that maps them and stay in the page cache);
- the floor = the same complete archs, recipe, split and device trained again by ``concurrency`` plain
  processes (``multiprocessing``, spawn) one after another, each with the threads a trial gets, without Ray
  or Optuna. Its ``wall_s`` counts from the pool's start (imports and data included, as a search's trials
  include theirs) to the last arch; ``training_wall_s`` only the training. ``search_over_floor_wall`` divides
  the search's wall time (trials and the front's test measurement) by the floor's ``wall_s``.

    python scripts/bench_search.py [--space smoke] [--trials 8] [--no-floor] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from nas_attn.lean import leave_out_triton_without_gpu
from nas_attn.runfolder import MANIFEST, read_manifest

REPO = Path(__file__).resolve().parent.parent
#: Ray's process title of a worker running a function trainable (``ray::ImplicitFunc.train``)
TRIAL_TITLE = "ImplicitFunc"
PAGE_KB = 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="smoke")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--gpus-per-trial", type=float)
    ap.add_argument("--data-root")
    ap.add_argument("--no-floor", action="store_true", help="leave out the plain loop")
    args = ap.parse_args()
    # as every nas-attn command does, so that the floor's processes (spawned: they inherit the environment)
    # import what a search's trials import
    triton_left_out = leave_out_triton_without_gpu()
    with tempfile.TemporaryDirectory() as results:
        figures, run_figures = _search(args, results)
        figures["triton_left_out"] = triton_left_out
        run = next(Path(results).glob("*/bench"))
        figures["worker_memory"] = _in_fresh_process(_where_memory_goes, str(run), args.data_root,
                                                     run_figures["threads"], run_figures["largest_arch"])
        if not args.no_floor:
            figures["floor"] = _floor(args, run, run_figures)
            figures["search_over_floor_wall"] = round(figures["search_wall_s"] / figures["floor"]["wall_s"], 2)
            figures["trials_over_floor_wall"] = round(figures["trials_wall_s"] / figures["floor"]["wall_s"], 2)
    print(json.dumps(figures, indent=2))


# -- the search ---------------------------------------------------------------------------------------------
def _search(args, results: str) -> tuple[dict, dict]:
    cmd = [sys.executable, str(REPO / "search.py"), "--space", args.space, "--trials", str(args.trials),
           "--results-dir", results, "--run-id", "bench", "--quiet"]
    for flag, value in (("--epochs", args.epochs), ("--gpus-per-trial", args.gpus_per_trial),
                        ("--data-root", args.data_root)):
        if value is not None:
            cmd += [flag, str(value)]
    t0 = time.time()
    p = subprocess.Popen(cmd, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, stdout=subprocess.DEVNULL)
    memory = MemorySampler(p.pid).start()
    if p.wait() != 0:
        raise SystemExit(f"the search exited {p.returncode}")
    memory.stop()
    total_s = time.time() - t0
    run = next(Path(results).glob("*/bench"))
    trials = pd.read_parquet(run / "trials.parquet")
    history = pd.read_parquet(run / "history.parquet")
    manifest = read_manifest(run / MANIFEST)
    # time in training steps: training images of an epoch / its measured training throughput
    images, bs = manifest.dataset.train, manifest.recipe["batch_size"]
    history["step_s"] = (images // bs * bs) / history["train_images_per_s"]
    step_s = history.groupby("trial")["step_s"].sum()
    epoch_s = history.groupby("trial")["epoch_s"].sum()  # training steps + BatchNorm re-estimation + validation
    done = trials[trials["status"].isin(["complete", "pruned", "failed"])].set_index("trial")
    overhead = done["wall_s"] - step_s.reindex(done.index).fillna(0)
    machinery = done["wall_s"] - epoch_s.reindex(done.index).fillna(0)
    evaluation = (epoch_s - step_s).reindex(done.index).dropna()
    search_s = manifest.attempts[-1].search_s
    # the trials' phase alone (the attempt's start -> the last trial recorded): the work the floor also does;
    # the rest of search_s is the front's test measurement, its heatmaps and the tables, which the floor skips
    ended = pd.to_datetime(done["started"]) + pd.to_timedelta(done["wall_s"].astype(float), unit="s")
    began = datetime.fromisoformat(manifest.attempts[-1].started).astimezone().replace(tzinfo=None)  # Optuna's
    trials_s = (ended.max() - pd.Timestamp(began)).total_seconds()  # times are naive local ones
    concurrency = manifest.resources["concurrency"]
    figures = {
        "space": args.space, "device": str(done["device"].iloc[0]), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs", "trials": len(done), "concurrency": concurrency,
        "epochs": manifest.recipe["epochs"], "train_images": images,
        "per_trial_overhead_s": {"median": round(float(overhead.median()), 2),
                                 "mean": round(float(overhead.mean()), 2)},
        # the overhead split: what is not the epochs (launch -> first step, last epoch -> result recorded: the
        # machinery) and what the epochs spend besides steps (BatchNorm re-estimation and validation: real work)
        "per_trial_machinery_s_median": round(float(machinery.median()), 2),
        "per_trial_evaluation_s_median": round(float(evaluation.median()), 2),
        "per_trial_wall_s_median": round(float(done["wall_s"].median()), 2),
        "per_trial_training_steps_s_median": round(float(step_s.median()), 2),
        "launch_to_first_step_s_median": round(float(np.nanmedian(done["launch_s"].astype(float))), 2),
        "in_process_startup_s_median": round(float(np.nanmedian(done["startup_s"].astype(float))), 2),
        "search_wall_s": search_s, "trials_wall_s": round(trials_s, 1),
        "after_trials_s": round(search_s - trials_s, 1),
        "trials_per_hour": round(len(done) / search_s * 3600, 1),
        "whole_command_s": round(total_s, 1),
        "memory_mb": memory.figures(),
    }
    threads = max(1, int(float(manifest.resources["cpus_per_trial"])))
    archs = [(run / "archs" / f"{n}.json").read_text() for n in sorted(done[done["status"] == "complete"].index)]
    device = "cpu" if str(done["device"].iloc[0]).startswith("cpu") else "cuda"
    largest = int(done[done["status"] == "complete"]["flops"].astype(float).idxmax())
    return figures, {"archs": archs, "threads": threads, "concurrency": concurrency, "device": device,
                     "largest_arch": (run / "archs" / f"{largest}.json").read_text(),
                     "seeds": [int(done.loc[n, "seed"]) for n in sorted(done[done["status"] == "complete"].index)]}


class MemorySampler:
    """Samples the peak resident memory of a process tree from ``/proc`` (Linux) in a thread."""

    def __init__(self, root: int, every_s: float = 0.2) -> None:
        self.root, self.every_s = root, every_s
        self.hwm_kb: dict[int, int] = {}
        self.anon_kb: dict[int, int] = {}
        self.titles: dict[int, set[str]] = {}
        self.total_peak_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.is_set():
            total = 0
            for pid in _tree(self.root):
                status = _status(pid)
                if not status:
                    continue
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), status.get("VmHWM", 0))
                self.anon_kb[pid] = max(self.anon_kb.get(pid, 0), status.get("RssAnon", 0))
                total += _pss_kb(pid)
                self.titles.setdefault(pid, set()).add(_title(pid))
            self.total_peak_kb = max(self.total_peak_kb, total)
            self._done.wait(self.every_s)

    def figures(self) -> dict:
        workers = [p for p, t in self.titles.items() if any(TRIAL_TITLE in x for x in t)]
        return {"driver_peak": round(self.hwm_kb.get(self.root, 0) / PAGE_KB),
                "driver_anonymous_peak": round(self.anon_kb.get(self.root, 0) / PAGE_KB),
                "trial_worker_peak": _spread(self.hwm_kb[p] for p in workers),
                "trial_worker_anonymous_peak": _spread(self.anon_kb[p] for p in workers),
                "all_processes_peak_sum": round(self.total_peak_kb / PAGE_KB)}


def _spread(kbs) -> dict:
    mb = sorted(round(kb / PAGE_KB) for kb in kbs)
    return {"max": max(mb, default=None), "min": min(mb, default=None), "each": mb}


def _tree(root: int) -> list[int]:
    """``root`` and its descendants now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _status(pid: int) -> dict[str, int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f)
                    if k in ("VmHWM", "RssAnon")}
    except (OSError, ValueError):
        return {}


def _pss_kb(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes that map them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except (OSError, ValueError):
        return 0


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")[:80]
    except OSError:
        return ""


# -- the floor: the same archs without Ray or Optuna --------------------------------------------------------
def _floor(args, run: Path, search: dict) -> dict:
    """The run's complete archs trained again with its recipe and split, by ``concurrency`` plain processes."""
    k = search["concurrency"]
    jobs = [[] for _ in range(k)]
    for i, (arch, seed) in enumerate(zip(search["archs"], search["seeds"], strict=True)):
        jobs[i % k].append((arch, seed))
    t0 = time.time()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(k) as pool:
        workers = pool.starmap(_floor_worker, [(str(run), args.data_root, search["threads"], search["device"], j)
                                               for j in jobs])
    wall = time.time() - t0
    training = max(w["ended"] for w in workers) - min(w["started"] for w in workers)
    return {"processes": k, "threads_each": search["threads"], "device": search["device"],
            "archs": len(search["archs"]), "wall_s": round(wall, 1), "training_wall_s": round(training, 1),
            "trials_per_hour": round(len(search["archs"]) / wall * 3600, 1),
            "worker_peak_mb": [w["peak_mb"] for w in workers],
            "per_arch_s": [s for w in workers for s in w["arch_s"]]}


def _floor_worker(run: str, data_root: str | None, threads: int, device: str, jobs: list[tuple[str, int]]) -> dict:
    import resource

    import torch

    from nas_attn.arch import Arch
    from nas_attn.train import train_arch

    torch.set_num_threads(threads)
    splits, recipe = _run_data(run, data_root)
    arch_s, started = [], time.time()
    for arch_json, seed in jobs:
        t0 = time.time()
        train_arch(Arch.from_json(arch_json), splits, recipe, seed=seed, device=device)
        arch_s.append(round(time.time() - t0, 1))
    return {"arch_s": arch_s, "started": started, "ended": time.time(),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / PAGE_KB)}


def _run_data(run: str, data_root: str | None):
    """The run's training splits and recipe, opened as its trials open them."""
    from nas_attn.plan import SearchOptions
    from nas_attn.recipe import Recipe
    from nas_attn.search import data_handle, load_search_data
    from nas_attn.space import RunSettings, load_space

    manifest = read_manifest(Path(run) / MANIFEST)
    options = SearchOptions.from_flags(space=manifest.space_file, data_root=data_root, quiet=True)
    space = load_space(options.space)
    ds = load_search_data(options, space)
    budget = manifest.budget or {}
    run_space = space.for_run(RunSettings(trials=budget.get("trials"), epochs=budget.get("epochs")),
                              cpu_budget=bool(budget.get("cpu_budget_applied")), num_classes=ds.num_classes,
                              in_chans=ds.in_chans)
    return data_handle(ds, run_space).open(), Recipe(**manifest.recipe)


# -- where a worker's memory goes ---------------------------------------------------------------------------
def _in_fresh_process(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _where_memory_goes(run: str, data_root: str | None, threads: int, arch_json: str) -> dict:
    """Resident peak after what a trial imports and builds, then the tensors one training step saves."""
    import torch

    import nas_attn.trial  # noqa: F401  (what a trial worker imports)
    from nas_attn.arch import Arch
    from nas_attn.train import Trainer, batch_slices

    torch.set_num_threads(threads)
    splits, recipe = _run_data(run, data_root)
    trainer = Trainer(Arch.from_json(arch_json), splits, recipe, torch.device("cpu"), recipe.seed)
    imports_mb = _own_mb("VmHWM")
    order = torch.arange(len(trainer.train))
    x, _ = next(iter(trainer.train.batches(order, batch_slices(len(trainer.train), trainer.batch_size, 1))))
    saved: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = t.untyped_storage().nbytes()
        return t

    trainer.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        trainer.model(trainer.augment(x)).sum().backward()
    return {"after_imports_model_and_data_mb": imports_mb,
            "saved_for_backward_mb": round(sum(saved.values()) / 2**20),
            "after_one_step_mb": _own_mb("VmHWM"), "anonymous_after_one_step_mb": _own_mb("RssAnon"),
            "batch_size": trainer.batch_size,
            "triton_imported": sys.modules.get("triton") is not None}


def _own_mb(key: str) -> int:
    """``VmHWM`` or ``RssAnon`` of this process, in MB."""
    return round(_status(os.getpid())[key] / PAGE_KB)


if __name__ == "__main__":
    main()
