"""How well cheaper evaluation ranks archs against training from scratch, and what it costs (prints JSON).

N archs of a space (default 24) are drawn stratified over FLOPs: a pool of 10 N archs is sampled uniformly
(``nas_attn.supernet.sample_path``, seeded by ``--draw``), sorted by FLOPs and cut into N strata, and one
arch is taken from each. Each arch is then

- trained from scratch with the space's recipe, once per seed (``--seeds``, default 2): the reference, and
  the seed-to-seed Kendall tau, the noise ceiling no cheaper strategy can be expected to beat;
- scored by **inherit**: the vanilla backbone trained once, each arch fine-tuned from its kept layers for
  ``--inherit-epochs`` (``nas_attn.weights.inherit_weights``);
- scored by **oneshot**: the space's supernet trained once (``--supernet-epochs``, default 3x the recipe's; in a
  worker, as a trial), each arch scored on its
  path with BatchNorm statistics re-estimated (``nas_attn.oneshot``).

The strategies train with a seed no reference run uses. For each strategy: Kendall tau (with its p-value) and
Spearman rho of its validation accuracy against the from-scratch mean, and the mean tau against each seed
alone, which is the figure comparable with the seed-to-seed tau (one seed against another: the noise ceiling).
Ranking by FLOPs or by the number of placements, without any training, is printed beside them as the bar a
strategy has to clear. CPU seconds per arch (``time.process_time`` of the worker doing the work, every thread
counted) and archs per CPU hour; for oneshot both the scoring alone (the supernet trained) and the cost
amortised over the N archs. Targets (issue 21): oneshot >= 50x as many archs per CPU hour as scratch; each
strategy's tau >= 0.6 x the seed-to-seed tau (not computed where that tau is under 0.1: from-scratch training
then does not rank the archs itself).

    python scripts/bench_strategy.py [--space mobilenetv2_ulsam] [--archs 24] [--draw 0] [--workers 2]

``--compare-hv`` measures instead what the strategy buys a whole search: a ``oneshot`` search of the space
(``--hv-scored`` archs scored, ``--hv-top-k`` retrained) runs first; then a ``scratch`` search with as many trials
as the oneshot search's wall time buys at the same concurrency (its retrained trials give the cost of one
trained from scratch). Both are real searches (Ray Tune, Optuna, the space's sampler) in one temporary results
folder, on the same machine one after the other. Printed: each search's wall time, trials and the hypervolume
of its trained front (validation accuracy up, FLOPs down), against one reference point (accuracy 0, the
largest FLOPs of either search's trained archs, plus 5%).

    python scripts/bench_strategy.py --compare-hv [--space mobilenetv2_ulsam] [--hv-scored 64] [--hv-top-k 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

#: what each worker process holds: the run's space and splits, opened once (the initializer)
_WORKER: dict = {}


def open_space(name: str, full_budget: bool, data_root: str | None):
    """The space as a search on this machine runs it (its CPU budget unless ``full_budget``), and its splits."""
    from nas_attn.plan import SearchOptions
    from nas_attn.search import data_handle, load_search_data
    from nas_attn.space import RunSettings, load_space

    options = SearchOptions.from_flags(space=name, data_root=data_root, quiet=True)
    space = load_space(options.space)
    data = load_search_data(options, space)
    run_space = space.for_run(RunSettings(), cpu_budget=not full_budget, num_classes=data.num_classes,
                              in_chans=data.in_chans)
    return run_space, data_handle(data, run_space).open()


def _init_worker(name: str, full_budget: bool, data_root: str | None) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["space"], _WORKER["splits"] = open_space(name, full_budget, data_root)


def _train(arch_json: str, seed: int, epochs: int | None = None, start_from: str | None = None,
           keep: str | None = None) -> tuple[float, float]:
    """(final validation accuracy, CPU seconds) of one training in a worker; ``start_from``: a saved vanilla
    state dict to inherit from; ``keep``: where to save the trained weights."""
    import torch

    from nas_attn.arch import Arch
    from nas_attn.train import train_arch

    c0 = time.process_time()
    space, splits = _WORKER["space"], _WORKER["splits"]
    recipe = space.recipe if epochs is None else replace(space.recipe, epochs=epochs)
    state = torch.load(start_from, weights_only=True) if start_from else None
    res = train_arch(Arch.from_json(arch_json), splits, recipe, seed=seed, device="cpu", start_from=state,
                     keep_weights=keep is not None)
    if keep is not None:
        torch.save(res.state_dict, keep)
    return res.history[-1].val_acc, time.process_time() - c0


def _oneshot(arch_jsons: list[str], seed: int, epochs: int, bn_images: int) -> dict:
    """The supernet trained once in a worker, then every arch scored: scores and CPU seconds of each phase."""
    from nas_attn.arch import Arch
    from nas_attn.oneshot import score_archs, train_supernet

    space, splits = _WORKER["space"], _WORKER["splits"]
    c0 = time.process_time()
    trained = train_supernet(space, splits, replace(space.recipe, epochs=epochs), seed=seed, device="cpu")
    c1 = time.process_time()
    scores = score_archs(trained, [Arch.from_json(j) for j in arch_jsons], splits, bn_images=bn_images)
    return {"scores": [s.top1 for s in scores], "train_cpu_s": c1 - c0,
            "score_cpu_s": (time.process_time() - c1) / len(arch_jsons),
            "final_train_loss": trained.history[-1].train_loss}


def draw_archs(space, n: int, draw: int) -> list:
    """``n`` distinct archs, one from each of ``n`` FLOPs strata of a uniformly sampled pool of ``10 n`` (of every
    arch the draw finds, in a smaller space)."""
    from nas_attn.complexity import complexity
    from nas_attn.supernet import sample_path

    rng = random.Random(draw)
    pool = {}
    for _ in range(1000 * n):  # a small space has fewer than 10 n archs: it is then drawn from all it has
        arch = sample_path(space, rng)
        pool.setdefault(arch.to_json(), arch)
        if len(pool) == 10 * n:
            break
    if len(pool) < n:
        raise SystemExit(f"{space.name} has only {len(pool)} archs; ask for fewer (--archs)")
    ranked = sorted(pool.values(), key=lambda a: (complexity(a)["flops"], a.to_json()))
    size = len(ranked) / n
    return [ranked[int(i * size) + rng.randrange(max(1, int(size)))] for i in range(n)]


def correlations(predicted: list[float], reference: list[float]) -> dict:
    """Kendall tau (with its p-value) and Spearman rho; ``None`` where a side is constant (no ranking)."""
    from scipy.stats import kendalltau, spearmanr

    tau, rho = kendalltau(predicted, reference), spearmanr(predicted, reference)
    return {"kendall_tau": _finite(tau.statistic), "kendall_p": _finite(tau.pvalue),
            "spearman_rho": _finite(rho.statistic)}


def _finite(value) -> float | None:
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def fidelity(predicted: list[float], accs: list[list[float]], mean: list[float]) -> dict:
    """How ``predicted`` ranks the archs: against the from-scratch mean, and against each seed alone (averaged:
    the figure comparable with the seed-to-seed tau, which also sets one seed against another)."""
    out = correlations(predicted, mean)
    taus = [correlations(predicted, a)["kendall_tau"] for a in accs]
    out["kendall_tau_vs_one_seed"] = (round(sum(taus) / len(taus), 4) if all(t is not None for t in taus)
                                      else None)
    return out


def per_hour(cpu_s: float) -> float:
    return round(3600 / cpu_s, 1) if cpu_s > 0 else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv2_ulsam")
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--draw", type=int, default=0, help="seed of the arch draw (report a second draw too)")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--inherit-epochs", type=int, default=None, help="default: half the recipe's epochs, at least 1")
    ap.add_argument("--supernet-epochs", type=int, default=None,
                    help="default: 3 x the recipe's epochs (the cost of three trainings, shared by every arch)")
    ap.add_argument("--bn-images", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--full-budget", action="store_true")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--compare-hv", action="store_true",
                    help="a oneshot search against a scratch search of equal compute (see above)")
    ap.add_argument("--hv-scored", type=int, default=64, help="--compare-hv: archs the oneshot search scores")
    ap.add_argument("--hv-top-k", type=int, default=4, help="--compare-hv: archs it retrains from scratch")
    args = ap.parse_args()
    os.environ.setdefault("NAS_ATTN_NO_TRITON", "1")
    if args.compare_hv:
        json.dump(compare_hv(args), sys.stdout, indent=1)
        print()
        return

    import torch

    from nas_attn.complexity import complexity

    torch.set_num_threads(1)
    space, splits = open_space(args.space, args.full_budget, args.data_root)
    archs = draw_archs(space, args.archs, args.draw)
    jsons = [a.to_json() for a in archs]
    inherit_epochs = args.inherit_epochs or max(1, space.recipe.epochs // 2)
    supernet_epochs = args.supernet_epochs or 3 * space.recipe.epochs
    out: dict = {"space": args.space, "cpu_budget": not args.full_budget, "archs": len(archs), "draw": args.draw,
                 "seeds": args.seeds, "epochs": space.recipe.epochs, "inherit_epochs": inherit_epochs,
                 "supernet_epochs": supernet_epochs, "bn_images": args.bn_images,
                 "train_images": len(splits.train), "val_images": len(splits.val)}
    t0 = time.time()
    pool = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), initializer=_init_worker,
                               initargs=(args.space, args.full_budget, args.data_root))
    with pool, tempfile.TemporaryDirectory() as tmp:
        # the reference runs take seeds seed_base .. seed_base + seeds - 1; the strategies another one, so that
        # no batch order, augmentation or initialisation is shared with a reference run
        seed_base, own = space.recipe.seed, space.recipe.seed + args.seeds
        oneshot = pool.submit(_oneshot, jsons, own, supernet_epochs, args.bn_images)
        scratch = [[pool.submit(_train, j, seed_base + s) for j in jsons] for s in range(args.seeds)]
        vanilla_path = str(Path(tmp) / "vanilla.pt")
        vanilla = pool.submit(_train, space.arch([]).to_json(), own, None, None, vanilla_path)
        vanilla_acc, vanilla_cpu = vanilla.result()
        inherit = [pool.submit(_train, j, own, inherit_epochs, vanilla_path) for j in jsons]
        shot = oneshot.result()
        supernet_cpu, score_cpu = shot["train_cpu_s"], shot["score_cpu_s"]
        runs = [[f.result() for f in seed_runs] for seed_runs in scratch]
        inherited = [f.result() for f in inherit]
    accs = [[acc for acc, _ in seed_runs] for seed_runs in runs]
    mean = [sum(col) / len(col) for col in zip(*accs, strict=True)]
    scratch_cpu = sum(c for seed_runs in runs for _, c in seed_runs) / (len(archs) * args.seeds)
    inherit_cpu = sum(c for _, c in inherited) / len(archs)
    out["scratch"] = {"cpu_s_per_arch": round(scratch_cpu, 1), "archs_per_cpu_hour": per_hour(scratch_cpu)}
    if args.seeds >= 2:
        out["scratch"]["seed_to_seed"] = correlations(accs[0], accs[1])
    out["inherit"] = {**fidelity([a for a, _ in inherited], accs, mean), "cpu_s_per_arch": round(inherit_cpu, 1),
                      "archs_per_cpu_hour": per_hour(inherit_cpu), "vanilla_cpu_s": round(vanilla_cpu, 1),
                      "vanilla_val_acc": vanilla_acc,
                      "archs_per_cpu_hour_amortised": per_hour(inherit_cpu + vanilla_cpu / len(archs))}
    out["oneshot"] = {**fidelity(shot["scores"], accs, mean), "supernet_cpu_s": round(supernet_cpu, 1),
                      "score_cpu_s_per_arch": round(score_cpu, 2), "archs_per_cpu_hour": per_hour(score_cpu),
                      "archs_per_cpu_hour_amortised": per_hour(score_cpu + supernet_cpu / len(archs)),
                      "supernet_final_train_loss": round(shot["final_train_loss"], 4)}
    # what ranking by cost alone gives (no training at all): the bar a strategy has to clear
    flops = [complexity(a)["flops"] for a in archs]
    out["zero_cost"] = {"flops": fidelity([float(f) for f in flops], accs, mean),
                        "placements": fidelity([float(len(a.placements)) for a in archs], accs, mean)}
    ceiling = out["scratch"].get("seed_to_seed", {}).get("kendall_tau")
    amortised = score_cpu + supernet_cpu / len(archs)
    out["targets"] = {
        "oneshot_scoring_vs_scratch_per_cpu_hour": round(scratch_cpu / score_cpu, 1) if score_cpu else None,
        "oneshot_amortised_vs_scratch_per_cpu_hour": round(scratch_cpu / amortised, 1) if amortised else None,
        "oneshot_scoring_50x": bool(score_cpu) and scratch_cpu / score_cpu >= 50,
        "seed_to_seed_tau": ceiling,
    }
    # a ratio to the ceiling means something only where from-scratch training itself ranks the archs
    if ceiling is not None and ceiling >= 0.1:
        for name in ("inherit", "oneshot"):
            tau = out[name]["kendall_tau_vs_one_seed"]
            out["targets"][f"{name}_tau_over_ceiling"] = None if tau is None else round(tau / ceiling, 3)
    out["per_arch"] = [{"arch": [p.short() for p in a.placements], "flops": flops[i],
                        "scratch": [r[i] for r in accs],
                        "inherit": inherited[i][0], "oneshot": shot["scores"][i]} for i, a in enumerate(archs)]
    out["wall_s"] = round(time.time() - t0, 1)
    json.dump(out, sys.stdout, indent=1)
    print()


def compare_hv(args) -> dict:
    """A oneshot search, then a scratch search of the compute it took; the hypervolume of each trained front."""
    from nas_attn.search.driver import run_search

    results = Path(tempfile.mkdtemp(prefix="bench_hv_"))
    space = _with_strategy(args.space, results, scored=args.hv_scored, retrain_top_k=args.hv_top_k)
    common = {"results_dir": str(results), "quiet": True, "full_budget": args.full_budget,
              "data_root": args.data_root}
    oneshot = _search_figures(run_search(space, strategy="oneshot", run_id="oneshot", **common))
    # equal compute: the trials a scratch search fits in the oneshot search's wall time at the same concurrency
    per_trial = oneshot["retrain_wall_s_mean"]
    if not per_trial:
        return {"space": args.space, "oneshot": oneshot, "error": "no retraining completed: no cost of a trial"}
    trials = max(1, int(oneshot["search_s"] * oneshot["concurrency"] / per_trial))
    scratch = _search_figures(run_search(space, strategy="scratch", trials=trials, run_id="scratch", **common))
    reference = [0.0, 1.05 * float(max(oneshot["max_flops"], scratch["max_flops"]))]  # every trained arch inside
    for figures in (oneshot, scratch):
        figures["hypervolume"] = _hypervolume(figures.pop("run_dir"), reference)
    return {"space": args.space, "cpu_budget": not args.full_budget, "reference_point": reference,
            "oneshot": oneshot, "scratch": scratch,
            "hypervolume_ratio": round(oneshot["hypervolume"] / scratch["hypervolume"], 4)
            if scratch["hypervolume"] else None, "results_dir": str(results)}


def _with_strategy(name: str, folder: Path, **settings) -> str:
    """A copy of the space file (same name, so the same run folders) with these ``strategy:`` settings: no flag
    sets them, a space file does."""
    import yaml

    from nas_attn.space import load_space

    source = load_space(name).path
    data = yaml.safe_load(source.read_text())
    data["strategy"] = {**(data.get("strategy") or {}), **settings}
    copy = folder / source.name
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(copy)


def _search_figures(result) -> dict:
    from nas_attn.runfolder import RunFolder

    manifest = RunFolder(result.run_dir, True).read_manifest()
    trials = result.trials
    trained = trials[trials["evaluation"].isin(["scratch"]) & (trials["status"] == "complete")]
    retrained = trained[trained["retrain_of"].notna()]
    return {"run_dir": str(result.run_dir), "search_s": sum(a.search_s or 0 for a in manifest.attempts),
            "concurrency": (manifest.resources or {}).get("concurrency"), "trials": len(trials),
            "trained": len(trained), "front": len(result.front),
            "front_val_acc": [round(float(v), 4) for v in result.front["val_acc_final"]],
            "front_mflops": [round(float(f) / 1e6, 3) for f in result.front["flops"]],
            "retrain_wall_s_mean": float(retrained["wall_s"].mean()) if len(retrained) else None,
            "max_flops": float(trained["flops"].max())}


def _hypervolume(run_dir: str, reference: list[float]) -> float:
    from nas_attn.results import hypervolume_history, open_run_study
    from nas_attn.runfolder import RunFolder

    study = open_run_study(Path(run_dir), RunFolder(Path(run_dir), True).read_manifest())
    history = hypervolume_history(study, reference)  # trained trials only (predictions left out)
    return float(history["hypervolume"].iloc[-1]) if len(history) else 0.0


if __name__ == "__main__":
    main()
