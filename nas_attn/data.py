"""Datasets → uint8 image tensors, decoded once per run (SPEC section 6).

A :class:`Dataset` holds the whole (small) dataset as uint8 arrays ``(N, C, H, W)`` already at the search's
input size, plus a fixed, seeded, stratified validation split carved from the training set. Trials receive
it through Ray's object store (zero-copy on a node) and move it to their device once.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas_attn.errors import DataError

BUNDLED_DIR = Path(__file__).parent / "_bundled"
SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nas_attn"
DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder")
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class Dataset:
    """A decoded dataset. ``train_*`` is the full training set; the validation split indexes into it."""

    name: str
    source: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def side(self) -> int:
        return int(self.train_x.shape[-1])

    def describe(self) -> str:
        return (f"{self.name} from {self.source}: {len(self.train_y)} train / {len(self.test_y)} test images, "
                f"{self.in_chans}x{self.side}x{self.side}, {self.num_classes} classes")


@dataclass
class Splits:
    """What a trial trains and validates on (indices into the training set), and the held-out test set."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) as a uint8 array.

    torchvision's MNIST classes expect their own folder layout with uncompressed files; the official
    distribution (and Debian's package) ships flat ``.gz`` files, so they are parsed here directly.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} values)")
    return data.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        for candidate in (root / name, root / "FashionMNIST" / "raw" / name):
            if candidate.is_file():
                return candidate
    return None


def _fmnist_from_folder(root: Path) -> Dataset | None:
    found = {split: [_find_idx(root, s) for s in stems] for split, stems in _FMNIST_FILES.items()}
    if not all(p for paths in found.values() for p in paths):
        return None
    (tx, ty), (vx, vy) = ([read_idx(p) for p in found[s]] for s in ("train", "test"))
    return Dataset("fashion_mnist", str(root), tx[:, None], ty.astype(np.int64), vx[:, None],
                   vy.astype(np.int64), 10)


def _fmnist_bundled() -> Dataset:
    arrays = []
    for split in ("train", "t10k"):
        with np.load(io.BytesIO(lzma.decompress((BUNDLED_DIR / f"fashion_mnist_sample_{split}.npz.xz")
                                                .read_bytes()))) as z:
            arrays.append((z["images"][:, None], z["labels"].astype(np.int64)))
    (tx, ty), (vx, vy) = arrays
    return Dataset("fashion_mnist", "bundled stratified sample (nas_attn/_bundled)", tx, ty, vx, vy, 10)


def _fmnist_download() -> Dataset | None:
    """torchvision's download into the user cache; ``None`` when offline (fails fast, no retries)."""
    import socket

    from torchvision.datasets import FashionMNIST

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    try:
        for train in (True, False):
            FashionMNIST(str(CACHE_DIR), train=train, download=True)
    except Exception:
        return None
    finally:
        socket.setdefaulttimeout(old)
    ds = _fmnist_from_folder(CACHE_DIR)
    if ds is not None:
        ds.source = f"torchvision download ({CACHE_DIR})"
    return ds


def _fashion_mnist(data_root: Path | None, download: bool) -> Dataset:
    if data_root is not None:
        ds = _fmnist_from_folder(data_root)
        if ds is None:
            raise DataError(f"--data-root {data_root}: no Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] …)")
        return ds
    env = os.environ.get("NAS_ATTN_DATA")
    if env:
        ds = _fmnist_from_folder(Path(env))
        if ds is None:
            raise DataError(f"$NAS_ATTN_DATA={env}: no Fashion-MNIST IDX files there")
        return ds
    for root in (SYSTEM_FMNIST, CACHE_DIR):
        ds = _fmnist_from_folder(root)
        if ds is not None:
            return ds
    if download:
        ds = _fmnist_download()
        if ds is not None:
            return ds
    return _fmnist_bundled()


def _cifar(name: str, data_root: Path | None, download: bool) -> Dataset:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, classes = (CIFAR10, 10) if name == "cifar10" else (CIFAR100, 100)
    root = data_root or CACHE_DIR
    try:
        train, test = (cls(str(root), train=t, download=download) for t in (True, False))
    except Exception as exc:  # torchvision raises RuntimeError (missing) or URLError (offline)
        raise DataError(f"{name}: not found under {root} and could not be downloaded ({exc})") from None
    return Dataset(name, str(root), train.data.transpose(0, 3, 1, 2).copy(), np.asarray(train.targets, np.int64),
                   test.data.transpose(0, 3, 1, 2).copy(), np.asarray(test.targets, np.int64), classes)


def _imagefolder(data_root: Path | None, input_size: int) -> Dataset:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if data_root is None or not (data_root / "train").is_dir() or not (data_root / "val").is_dir():
        raise DataError(f"imagefolder: --data-root must hold train/ and val/ class folders (got {data_root})")
    tf = transforms.Compose([transforms.Resize(input_size), transforms.CenterCrop(input_size),
                             transforms.PILToTensor()])
    out = []
    for split in ("train", "val"):
        folder = ImageFolder(str(data_root / split), transform=tf)
        if not len(folder):
            raise DataError(f"imagefolder: {data_root / split} has no images")
        xs = np.stack([np.asarray(folder[i][0]) for i in range(len(folder))])
        out.append((xs, np.asarray(folder.targets, np.int64), len(folder.classes)))
    (tx, ty, k), (vx, vy, _) = out
    return Dataset("imagefolder", str(data_root), tx, ty, vx, vy, k)


def load_dataset(name: str = "fashion_mnist", data_root: str | Path | None = None, input_size: int | None = None,
                 download: bool = True) -> Dataset:
    """Decode a dataset once, resized to ``input_size`` (if given), with per-channel mean/std.

    Fashion-MNIST sources, first found wins: ``data_root``; ``$NAS_ATTN_DATA``;
    ``/usr/share/datasets/fashion-mnist``; the user cache; torchvision download; the bundled sample.

    Raises:
        DataError: unknown dataset, or an explicitly given source that holds no such data.
    """
    root = Path(data_root).expanduser() if data_root else None
    if root is not None and not root.exists():
        raise DataError(f"--data-root {root}: no such directory")
    if name == "fashion_mnist":
        ds = _fashion_mnist(root, download)
    elif name in ("cifar10", "cifar100"):
        ds = _cifar(name, root, download)
    elif name == "imagefolder":
        ds = _imagefolder(root, input_size or 224)
    else:
        raise DataError(f"unknown dataset {name!r} (one of {', '.join(DATASETS)})")
    if input_size and ds.side != input_size:
        ds.train_x, ds.test_x = _resize(ds.train_x, input_size), _resize(ds.test_x, input_size)
    sample = ds.train_x[:: max(1, len(ds.train_x) // 10_000)].astype(np.float32) / 255
    ds.mean = tuple(float(v) for v in sample.mean((0, 2, 3)))
    ds.std = tuple(float(v) for v in sample.std((0, 2, 3)))
    return ds


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    out = []
    for chunk in torch.from_numpy(np.require(x, requirements='W')).split(8192):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, picked): ``fraction`` of each class picked with a seeded permutation."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picked.append(rng.permutation(idx)[: int(round(fraction * len(idx)))])
    chosen = np.sort(np.concatenate(picked))
    rest = np.setdiff1d(np.arange(len(labels)), chosen, assume_unique=True)
    return rest, chosen


def make_splits(ds: Dataset, val_fraction: float = 0.1, seed: int = 0, train_subset: int | None = None,
                val_subset: int | None = None) -> Splits:
    """The seeded stratified validation split, optionally with stratified subsets (for small budgets)."""
    rest, val = stratified_split(ds.train_y, val_fraction, seed)
    if train_subset and train_subset < len(rest):
        _, keep = stratified_split(ds.train_y[rest], train_subset / len(rest), seed + 1)
        rest = rest[keep]
    if val_subset and val_subset < len(val):
        _, keep = stratified_split(ds.train_y[val], val_subset / len(val), seed + 2)
        val = val[keep]
    return Splits(ds.train_x[rest], ds.train_y[rest], ds.train_x[val], ds.train_y[val], ds.test_x, ds.test_y,
                  ds.num_classes, ds.mean, ds.std)
