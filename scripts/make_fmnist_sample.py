"""Regenerate the Fashion-MNIST sample bundled in the package (nas_attn/_bundled/).

12,000 train / 2,000 test images drawn stratified (equal per class) from the official IDX files with a fixed
seed, stored as xz-compressed .npz so the quick start trains on real images with no network.

    python scripts/make_fmnist_sample.py ../shared/data/fashion-mnist
"""

from __future__ import annotations

import argparse
import io
import lzma
from pathlib import Path

import numpy as np

from nas_attn.data import BUNDLED_DIR, read_idx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path, help="folder with the official *-idx?-ubyte.gz files")
    ap.add_argument("--seed", type=int, default=20201)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for split, n in (("train", 12_000), ("t10k", 2_000)):
        x = read_idx(args.root / f"{split}-images-idx3-ubyte.gz")
        y = read_idx(args.root / f"{split}-labels-idx1-ubyte.gz")
        pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), n // 10, replace=False) for c in range(10)]))
        buf = io.BytesIO()
        np.savez(buf, images=x[pick], labels=y[pick])
        out = BUNDLED_DIR / f"fashion_mnist_sample_{split}.npz.xz"
        out.write_bytes(lzma.compress(buf.getvalue(), preset=6))
        print(f"{out}: {len(pick)} images, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
