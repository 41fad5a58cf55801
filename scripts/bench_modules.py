"""Forward+backward time of every attention module at a typical MobileNetV2 position, and vectorised ULSAM
against a loop over groups of the same equations, as ratios measured in one run.

    python scripts/bench_modules.py [--batch 128 --channels 96 --side 14] [--device cuda] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from nas_attn.modules import create, get_entry, list_modules
from nas_attn.modules.ulsam import ULSAM, ulsam_loop_reference


def _time(fn, x: torch.Tensor, device: torch.device, repeat: int) -> float:
    """Median seconds of forward + backward."""
    def step():
        x.grad = None
        fn(x).sum().backward()

    for _ in range(3):
        step()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--channels", type=int, default=96)
    ap.add_argument("--side", type=int, default=14)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.side, args.side, device=device, requires_grad=True)
    identity_s = _time(lambda t: t * 1.0, x, device, args.repeat)
    rows = {}
    for name in list_modules():
        limit = get_entry(name).max_positions
        if limit is not None and args.side ** 2 > limit:  # e.g. csm over a 56x56 map: refused, as in a search
            print(f"  {name}: skipped, {args.side}x{args.side} exceeds its {limit} positions")
            continue
        g = 4 if get_entry(name).takes_groups else None
        mod = create(name, args.channels, g).to(device).train()
        rows[name] = _time(mod, x, device, args.repeat)
    loop = {}
    for g in (1, 2, 4, 8, 16):
        if args.channels % g:
            continue
        mod = ULSAM(args.channels, g).to(device)
        vec_s = _time(mod, x, device, args.repeat)
        loop_s = _time(lambda t, m=mod: ulsam_loop_reference(m, t), x, device, args.repeat)
        loop[g] = {"vectorised_ms": vec_s * 1e3, "loop_ms": loop_s * 1e3, "speedup": loop_s / vec_s}
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.processor() or 'x86_64'},"
                  f" {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "input": [args.batch, args.channels, args.side, args.side],
        "modules_fwd_bwd_ms": {k: round(v * 1e3, 3) for k, v in rows.items()},
        "modules_vs_ulsam": {k: round(v / rows["ulsam"], 2) for k, v in rows.items()},
        "elementwise_baseline_ms": round(identity_s * 1e3, 3),
        "ulsam_vectorised_vs_loop": {g: {k: round(v, 3) for k, v in d.items()} for g, d in loop.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"device {result['device']}, torch {result['torch']}, input {tuple(result['input'])}, fwd+bwd median")
    for k, v in sorted(rows.items(), key=lambda kv: kv[1]):
        print(f"  {k:<16} {v * 1e3:9.3f} ms   {v / rows['ulsam']:6.2f} x ulsam")
    print("ULSAM vectorised vs loop over groups (same equations, same weights):")
    for g, d in loop.items():
        print(f"  g={g:<3} vectorised {d['vectorised_ms']:8.3f} ms   loop {d['loop_ms']:8.3f} ms   "
              f"speedup {d['speedup']:5.2f}x")


if __name__ == "__main__":
    main()
