"""How long the automatic numbering of a library CNN takes (prints JSON): for each model of the zoo list of
``tests/test_zoo.py`` (the same rule), the wall time of its positions with sides and ops at its default input
size, in one process, once per model (the numbering is cached per process: each model is numbered once, as a
search numbers its backbone once). Building the model on the meta device is included; importing torch, timm
and torchvision is not (``import_s``, measured in the same run).

Target (issue 19): under 1 s for 90 % of the listed models on a 2-core machine.

    python scripts/bench_backbones.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="number the first N models only")
    args = parser.parse_args()
    t0 = time.perf_counter()
    import timm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import_s = time.perf_counter() - t0
    sys.path.insert(0, str(REPO / "tests"))
    from test_zoo import input_size, timm_models, torchvision_models

    from nas_attn.arch import Arch
    from nas_attn.errors import ArchError

    names = (timm_models() + torchvision_models())[: args.limit]
    times, refused = {}, []
    warnings.simplefilter("ignore")
    for name in names:
        start = time.perf_counter()
        try:
            Arch(name, num_classes=10, input_size=input_size(name)).positions()
        except ArchError:
            refused.append(name)
        times[name] = time.perf_counter() - start
    values = sorted(times.values())
    under = sum(v < TARGET_S for v in values)
    print(json.dumps({
        "models": len(values), "refused": len(refused), "import_s": round(import_s, 2),
        "median_s": round(statistics.median(values), 3),
        "p90_s": round(values[int(0.9 * (len(values) - 1))], 3), "max_s": round(values[-1], 3),
        "under_target_fraction": round(under / len(values), 3), "target_s": TARGET_S,
        "target_met": under >= 0.9 * len(values),
        "slowest": {n: round(t, 2) for n, t in sorted(times.items(), key=lambda kv: -kv[1])[:8]},
    }, indent=1))


if __name__ == "__main__":
    main()
