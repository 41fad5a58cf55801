"""Real image files for the data tests: ImageFolder trees and CIFAR archives in their published formats."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

#: how the images of a mixed tree are written, in turn: (format, PIL mode)
MIXES = [("JPEG", "RGB"), ("PNG", "L"), ("PNG", "P"), ("PNG", "RGBA"), ("JPEG", "L"), ("PNG", "RGB"),
         ("JPEG", "CMYK"), ("PNG", "P-transparent")]


def picture(rng: np.random.Generator, width: int, height: int, label: int) -> Image.Image:
    """A smooth picture whose colours depend on its class (so that a network can learn something)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.array([(label * 53) % 256, (label * 97) % 256, (label * 151) % 256], np.float32)
    wave = 60 * np.sin(xx / (5 + label) + rng.uniform(0, 6)) * np.cos(yy / (7 + label))
    noise = rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(base + wave[..., None] + noise, 0, 255).astype(np.uint8))


def save(image: Image.Image, path: Path, fmt: str, mode: str) -> Path:
    if mode == "P-transparent":
        image = image.convert("P")
        image.info["transparency"] = 0
        path = path.with_suffix(".png")
        image.save(path, transparency=0)
        return path
    image = image.convert(mode)
    path = path.with_suffix(".jpg" if fmt == "JPEG" else ".png")
    image.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def make_tree(root: Path, classes: int = 3, train: int = 8, val: int = 3, sizes=(40, 120), seed: int = 0,
              corrupt: bool = True, empty_class: bool = True, mixed: bool = True) -> dict[str, list[Path]]:
    """``root/train/<class>/…`` and ``root/val/<class>/…``: JPEG and PNG of mixed sizes and modes; with
    ``corrupt`` one truncated JPEG in train/, with ``empty_class`` a class folder with no image in it.

    Returns the image files written per split (the corrupt one under ``"corrupt"``).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[Path]] = {"train": [], "val": [], "corrupt": []}
    k = 0
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                fmt, mode = MIXES[k % len(MIXES)] if mixed else ("JPEG", "RGB")
                k += 1
                out[split].append(save(picture(rng, w, h, c), folder / f"img_{i:03d}", fmt, mode))
    if corrupt:
        good = out["train"][0].read_bytes() if out["train"][0].suffix == ".jpg" else b"\xff\xd8\xff\xe0" * 64
        bad = root / "train" / "class_00" / "zz_truncated.jpg"
        bad.write_bytes(good[: len(good) // 3])
        out["corrupt"].append(bad)
    if empty_class:
        (root / "train" / "class_zz_empty").mkdir(parents=True, exist_ok=True)
    return out


def cifar_batch(rng: np.random.Generator, n: int, classes: int, label_key: bytes) -> dict:
    """A batch as the CIFAR archives hold it: a Python 2 pickle of a dict with bytes keys."""
    return {b"batch_label": b"generated", label_key: [int(v) for v in rng.integers(0, classes, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def make_cifar_archive(root: Path, name: str = "cifar10", per_batch: int = 20, seed: int = 0) -> dict[str, dict]:
    """``cifar-10-python.tar.gz`` (or ``cifar-100-python.tar.gz``) in the published layout, small batches."""
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        archive, folder, names, key, classes = "cifar-10-python.tar.gz", "cifar-10-batches-py", [
            *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"], b"labels", 10
    else:
        archive, folder, names, key, classes = "cifar-100-python.tar.gz", "cifar-100-python", ["train", "test"], \
            b"fine_labels", 100
    batches = {b: cifar_batch(rng, per_batch * (3 if name == "cifar100" and b == "train" else 1), classes, key)
               for b in names}
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(root / archive, "w:gz") as tar:
        for b, content in batches.items():
            blob = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{folder}/{b}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches
