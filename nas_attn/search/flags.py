"""The search's command line: ``python search.py …`` and ``nas-attn search …``."""

from __future__ import annotations

import sys
from pathlib import Path

from nas_attn.cli import OneLineArgumentParser, run_cli
from nas_attn.results import format_front, format_training
from nas_attn.search.driver import SearchResult, run_search
from nas_attn.space import SAMPLERS


def build_parser(prog: str = "search.py") -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog=prog, description="Search attention placements: Optuna samplers propose, "
                                                     "Ray Tune trains, the run folder keeps the Pareto front.")
    p.add_argument("--space", required=True, help="a name in search_spaces/ or a path to a .yaml file")
    p.add_argument("--trials", type=int, help="trials to finish (complete, pruned or failed); default: the space's")
    p.add_argument("--epochs", type=int, help="epochs per trial; default: the space's")
    _add_data_flags(p)
    p.add_argument("--sampler", choices=SAMPLERS)
    p.add_argument("--seed", type=int, help="sampler and trial seed base; default: the space's")
    p.add_argument("--strategy", choices=["scratch", "inherit", "oneshot"],
                   help="how archs are evaluated: trained from scratch (default), fine-tuned from the vanilla "
                        "trial's weights, or scored by a one-shot supernet; the last two retrain their predicted "
                        "front from scratch (docs/search.md)")
    _add_run_flags(p)
    p.add_argument("--reevaluate-front", type=int, default=0, metavar="K",
                   help="retrain each front arch with K more seeds and report mean ± std")
    p.add_argument("--full-budget", action="store_true",
                   help="without a GPU, still run the space's full budget (default: its cpu_budget)")
    p.add_argument("--compile", action="store_true", help="torch.compile each trial's model")
    p.add_argument("--quiet", action="store_true", help="only the final table")
    return p


#: the space ``nas-attn train`` takes its dataset and recipe from when none is named (``make search``'s)
DEFAULT_TRAIN_SPACE = "mobilenetv2_ulsam"


def build_train_parser(prog: str = "nas-attn train") -> OneLineArgumentParser:
    """``nas-attn train``: one arch outside a search, with a space's dataset and recipe, one trial per seed."""
    p = OneLineArgumentParser(prog=prog, description="Train one arch (a paper's row, a front arch at a longer "
                              "budget) with a space's dataset and recipe; writes a run folder that dashboard, "
                              "export, heatmaps and load_trial read.")
    p.add_argument("--arch", required=True, help="the arch: JSON text or a .json file (nas-attn paper-tables "
                                                 "--arch ROW_ID prints one)")
    p.add_argument("--space", default=DEFAULT_TRAIN_SPACE,
                   help=f"where the dataset and the recipe come from (default: {DEFAULT_TRAIN_SPACE}); its search "
                        "section is not used")
    p.add_argument("--seeds", type=int, dest="trials", metavar="K",
                   help="train K times, seeds SEED, SEED+1, …; the table gives each and their mean ± std (default 1)")
    p.add_argument("--epochs", type=int, help="epochs; default: the space's")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help="input side in pixels (default: the space's; a paper's ImageNet row: 224)")
    p.add_argument("--recipe", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe setting over the space's, as in a space file's train section; repeat it: "
                        "--recipe lr=0.05 --recipe schedule=multistep --recipe milestones=[30,60]")
    _add_data_flags(p)
    p.add_argument("--seed", type=int, help="the first seed; default: the space's")
    _add_run_flags(p)
    p.add_argument("--full-budget", action="store_true",
                   help="without a GPU, still use the space's full data and recipe (default: its cpu_budget's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--quiet", action="store_true", help="only the final table")
    return p


def _add_data_flags(p: OneLineArgumentParser) -> None:
    p.add_argument("--dataset", choices=["fashion_mnist", "cifar10", "cifar100", "imagefolder"])
    p.add_argument("--data-root", help="dataset folder (first source tried)")
    p.add_argument("--cache-dir", help="where decoded datasets are kept, memory-mapped by every later run "
                                       "(default: $XDG_CACHE_HOME/nas_attn/decoded)")
    p.add_argument("--strict-data", action="store_true",
                   help="an unreadable image or an empty class folder is an error (default: skipped, with a warning)")
    p.add_argument("--device-data-gb", type=float, metavar="GB",
                   help="device memory a trial may hold its images in; a larger split is streamed from the cache "
                        "(default: half of the trial's share of the free memory; 0 always streams)")


def _add_run_flags(p: OneLineArgumentParser) -> None:
    """Where the run folder goes, and where and how its trials run."""
    p.add_argument("--results-dir", help="where run folders go (default: $NAS_ATTN_RESULTS_DIR, or ./results; "
                                         "inside a Ray job ~/nas-attn/results)")
    p.add_argument("--run-id", help="run folder name; an existing one is resumed (default: a timestamp)")
    p.add_argument("--resume", action="store_true", help="continue the latest (or --run-id) run of this space")
    p.add_argument("--address", help="join a Ray cluster: auto or HOST:PORT (default: a local Ray)")
    p.add_argument("--gpus-per-trial", type=float, help="fraction of a GPU per trial (0.25 packs 4 per GPU)")
    p.add_argument("--cpus-per-trial", type=float)
    p.add_argument("--concurrency", type=int, help="trials at once (default: what the resources allow)")
    p.add_argument("--storage", help="Optuna storage URL (e.g. sqlite:///study.db, postgresql://…); "
                                     "default: a journal file in the run folder")
    p.add_argument("--storage-path", help="where Ray Tune keeps trial checkpoints: a path every node can read "
                                          "(NFS) or a URI (s3://…, gs://…); default: RUN_DIR/tune")


def main(argv: list[str] | None = None, prog: str = "search.py") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    flags = {k: v for k, v in vars(args).items() if k != "debug"}
    return run_cli(lambda: print_result(run_search(**flags), flags.get("quiet", False)), prog)


def train_main(argv: list[str] | None = None, prog: str = "nas-attn train") -> int:
    args = build_train_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    flags = {k: v for k, v in vars(args).items() if k != "debug"}
    return run_cli(lambda: print_training(run_search(**flags)), prog)


def print_training(result: SearchResult) -> int:
    """Each seed's accuracy, then their mean ± std (sample std, over the seeds that completed)."""
    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items()) or "no trials"
    print(f"\n{result.run_dir.parent.name}: {counts}\n{format_training(result.trials)}")
    print(f"results: {shown_path(result.run_dir)}")
    return 0


def print_result(result: SearchResult, quiet: bool) -> int:
    counts = ", ".join(f"{v} {k}" for k, v in result.counts().items()) or "no trials"
    name = result.run_dir.parent.name
    print(f"\n{name}: {counts}; Pareto front (validation accuracy vs FLOPs):\n{format_front(result.front)}")
    print(f"results: {shown_path(result.run_dir)}")
    return 0


def shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it lies under it (shorter to read and to paste), else as is."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
