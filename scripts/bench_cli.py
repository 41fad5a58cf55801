"""How fast bad input is answered (prints JSON): each case runs the real command as a user would, in a new
process, and its wall time to the one-line error and exit status 2 is measured (median of ``--repeat``).
Target: every case under 2 s (flags and files are checked before torch and Ray are imported).

A check that must build a model (constraints no arch meets: the cheapest arch's params and FLOPs) cannot
answer before torch and timm are imported; ``import_floor_s`` is that import alone, measured in the same run.

Two sets: the cases below, and every family of ``tests/test_bad_input.py`` (flags, space files, data roots,
resumes, ``--arch``, damaged checkpoints and heatmap images), whose tests record each refusal's wall time when
``NAS_ATTN_CLI_TIMES`` names a file; the suite is run ``--repeat`` times for them (it runs a small search
first, for the damaged-run cases).

    python scripts/bench_cli.py [--repeat 3] [--no-families]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 2.0


def cases(tmp: Path) -> dict[str, list[str]]:
    bad_space = tmp / "bad.yaml"
    bad_space.write_text("backbone: {name: mobilenetv2}\ndataset: {name: fashion_mnist, input_size: 32}\n"
                         "search: {positions: '17-8', modules: [none, ulsam]}\n")
    search = [sys.executable, str(REPO / "search.py")]
    cli = [sys.executable, "-m", "nas_attn"]
    return {
        "search: --trials 0": [*search, "--space", "smoke", "--trials", "0"],
        "search: unknown space": [*search, "--space", "no_such_space"],
        "search: malformed space file": [*search, "--space", str(bad_space)],
        "search: --seed 2**64": [*search, "--space", "smoke", "--seed", str(2**64)],
        "search: --run-id ../x": [*search, "--space", "smoke", "--run-id", "../x"],
        "search: --resume without a run": [*search, "--space", "smoke", "--resume", "--results-dir", str(tmp / "r")],
        "complexity: illegal placement": [*cli, "complexity", "--arch",
                                          '{"backbone": "mobilenetv2", "placements": [{"position": 8, '
                                          '"op": "substitute", "module": "ulsam"}]}'],
        "positions: unknown backbone": [*cli, "positions", "vgg99"],
        "dashboard: missing folder": [*cli, "dashboard", str(tmp / "missing")],
    }


def measure(cmd: list[str], repeat: int) -> dict:
    times, last = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
        times.append(time.perf_counter() - t0)
    lines = last.stderr.strip().splitlines()
    return {"median_s": round(statistics.median(times), 3), "exit": last.returncode,
            "one_line": len(lines) == 1, "error": lines[-1][:160] if lines else ""}


def families(tmp: Path, repeat: int) -> dict[str, dict]:
    """Each case of tests/test_bad_input.py: its refusal's median wall time over ``repeat`` runs of the file."""
    times_file = tmp / "times.jsonl"
    env = dict(os.environ, NAS_ATTN_CLI_TIMES=str(times_file), RAY_AUTH_MODE="disabled")
    for _ in range(repeat):
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(REPO / "tests" / "test_bad_input.py")], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=1800)
        if r.returncode != 0:
            raise SystemExit(f"tests/test_bad_input.py failed:\n{r.stdout[-3000:]}")
    runs: dict[str, list[dict]] = {}
    for line in times_file.read_text().splitlines():
        record = json.loads(line)
        runs.setdefault(f"tests: {record['case']}", []).append(record)
    return {case: {"median_s": round(statistics.median(r["s"] for r in rs), 3), "exit": rs[-1]["exit"],
                   "one_line": True, "error": "(asserted by the test)"} for case, rs in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-families", action="store_true", help="only the cases above, not tests/test_bad_input.py")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        results = {name: measure(cmd, args.repeat) for name, cmd in cases(Path(d)).items()}
        if not args.no_families:
            results.update(families(Path(d), args.repeat))
        floor = measure([sys.executable, "-c", "import torch, timm"], args.repeat)["median_s"]
    worst = max(r["median_s"] for r in results.values())
    over = {name: r["median_s"] for name, r in results.items() if r["median_s"] >= TARGET_S}
    print(json.dumps({"target_s": TARGET_S, "worst_median_s": worst, "all_under_target": not over,
                      "cases_n": len(results), "over_target": over, "import_floor_s": floor,
                      "all_exit_2_one_line": all(r["exit"] == 2 and r["one_line"] for r in results.values()),
                      "cases": results}, indent=2))


if __name__ == "__main__":
    main()
