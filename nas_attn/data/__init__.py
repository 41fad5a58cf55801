"""Datasets → a decoded cache on local disk → the splits a trial trains, validates and tests on (docs/data.md).

Each dataset is decoded once into uint8 arrays ``(N, C, S, S)`` (:mod:`nas_attn.data.cache`, under
``$XDG_CACHE_HOME/nas_attn/decoded`` unless ``cache_dir`` says otherwise) and memory-mapped by every later
run. :func:`load_dataset` finds the source, builds or opens its entry and returns a :class:`Dataset`;
:func:`make_splits` carves the seeded, stratified validation split from the training set (row indices, no
copy). A search hands its trials a :class:`DataHandle` — where the entry is, how to split it, its mean and std
— and each trial opens the entry on its own node (building it there, under a lock, if the node lacks it).

Importing this module is torch-free (the space validation reads :data:`DATASETS`).
"""

from __future__ import annotations

import functools
import gzip
import io
import lzma
import os
import socket
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas_attn.data.cache import CacheEntry, digest, file_digest, open_or_build, read_entry
from nas_attn.data.sources import (
    Arrays,
    FolderTree,
    Found,
    array_builder,
    cifar_files,
    first_lines,
    folder_builder,
    read_cifar,
)
from nas_attn.errors import DataError

BUNDLED_DIR = Path(__file__).parent.parent / "_bundled"
SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
#: the user cache: torchvision downloads land here, decoded datasets under ``decoded/``
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nas_attn"
DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder")
#: the ``root`` of the sample of Fashion-MNIST that ships inside the package
BUNDLED = "bundled"
_NATIVE_SIDE = {"fashion_mnist": 28, "cifar10": 32, "cifar100": 32, "imagefolder": 224}
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DataSource:
    """A located dataset and how it is stored: what a node needs to find (or build) its cache entry.

    Attributes:
        name: one of :data:`DATASETS`.
        root: the folder the files were found in (:data:`BUNDLED`: the sample inside the package).
        side: the stored images' side.
        strict: an unreadable image or an empty class folder is an error instead of a warning.
        cache_dir: the cache folder (``None``: each node's ``$XDG_CACHE_HOME/nas_attn/decoded``).
        quiet: no progress bar while decoding.
    """

    name: str
    root: str
    side: int
    strict: bool = False
    cache_dir: str | None = None
    quiet: bool = False

    def cache_folder(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else CACHE_DIR / "decoded"

    def prefix(self) -> str:
        """The entry's name without its key: dataset, stored side, where the source is."""
        return f"{self.name}-{self.side}px-{digest(self.root)[:8]}"


@dataclass
class Dataset:
    """A decoded dataset: ``train_*`` the whole training set, ``test_*`` the held-out set (``val/`` of a tree).

    The arrays are read-only memory maps of the cache entry ``cache`` (plain arrays only where made by hand).
    """

    name: str
    source: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    #: images skipped as unreadable, empty class folders: one line each (at most ten, then a count)
    warnings: tuple[str, ...] = ()
    origin: DataSource | None = None
    cache: CacheEntry | None = None

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def side(self) -> int:
        return int(self.train_x.shape[-1])

    def describe(self) -> str:
        return (f"{self.name} from {self.source}: {len(self.train_y)} train / {len(self.test_y)} test images, "
                f"{self.in_chans}x{self.side}x{self.side}, {self.num_classes} classes")

    def handle(self, split: SplitSpec, memory_budget: int | None = None) -> DataHandle:
        """What a trial needs to open this dataset's ``split`` on its node (small, picklable)."""
        if self.origin is None or self.cache is None:
            raise ValueError("a dataset made by hand has no cache entry to hand to trials")
        splits = make_splits(self, split.val_fraction, split.seed, split.train_subset, split.val_subset,
                             split.test_subset)
        return DataHandle(self.origin, self.cache.meta.key, split, self.num_classes, self.in_chans, self.side,
                          tuple(self.mean), tuple(self.std), (len(splits.train), len(splits.val), len(splits.test)),
                          memory_budget)


@dataclass(frozen=True)
class ImageSet:
    """The images of one split: rows of a ``(N, C, S, S)`` uint8 array (usually the cache's memory map).

    Attributes:
        images: the whole array the rows index.
        labels: one int64 label per image of this set.
        rows: which rows of ``images`` (``None``: all of them, in order).
    """

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.images.shape[1:])

    @property
    def nbytes(self) -> int:
        return len(self) * int(np.prod(self.image_shape))

    def read(self, positions: np.ndarray | slice | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """The images at ``positions`` of this set (``None``: all), copied into ``out`` when given."""
        positions = slice(None) if positions is None else positions
        if self.rows is None and isinstance(positions, slice):
            part = self.images[positions]
            if out is None:
                return np.array(part)
            out[...] = part
            return out
        rows = self.rows[positions] if self.rows is not None else positions
        # mode="clip": the rows are valid, and "raise" would buffer the whole result before writing ``out``
        return np.take(self.images, rows, axis=0, out=out, mode="clip")


@dataclass(frozen=True)
class Splits:
    """What a trial trains and validates on (rows of the training set), and the held-out test set."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def train_y(self) -> np.ndarray:
        return self.train.labels

    @property
    def val_y(self) -> np.ndarray:
        return self.val.labels

    @property
    def test_y(self) -> np.ndarray:
        return self.test.labels

    @property
    def train_x(self) -> np.ndarray:
        """The training images, read into memory (small datasets; trials read batches instead)."""
        return self.train.read()

    @property
    def val_x(self) -> np.ndarray:
        return self.val.read()

    @property
    def test_x(self) -> np.ndarray:
        return self.test.read()


@dataclass(frozen=True)
class SplitSpec:
    """How the validation split is carved: see :func:`make_splits`."""

    val_fraction: float = 0.1
    seed: int = 0
    train_subset: int | None = None
    val_subset: int | None = None
    test_subset: int | None = None


@dataclass(frozen=True)
class DataHandle:
    """What a trial needs to open its data on its node: small and picklable (no arrays).

    Attributes:
        source: where the dataset is and how it is stored (a node lacking the cache entry builds it from there).
        key: the digest of the source files the driver opened; a node must open the same.
        split: how to carve the validation split.
        sizes: training, validation and test images.
        memory_budget: bytes of device memory a trial may hold images in (``None``: from the free memory).
    """

    source: DataSource
    key: str
    split: SplitSpec
    num_classes: int
    in_chans: int
    side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sizes: tuple[int, int, int]
    memory_budget: int | None = None

    def open(self) -> Splits:
        """The splits, memory-mapped from the cache (opened once per process).

        Raises:
            DataError: the entry is missing here and the source cannot be read, or differs from the driver's.
        """
        return _open_splits(self.source, self.key, self.split)


@functools.lru_cache(maxsize=4)
def _open_splits(source: DataSource, key: str, split: SplitSpec) -> Splits:
    ds = _open_by_key(source, key)
    return make_splits(ds, split.val_fraction, split.seed, split.train_subset, split.val_subset, split.test_subset)


def _open_by_key(source: DataSource, key: str) -> Dataset:
    folder = source.cache_folder() / f"{source.prefix()}-{key[:16]}"
    meta, _ = read_entry(folder, key)
    if meta is not None:
        return _dataset(source, CacheEntry(folder, meta))
    found = _found(source)  # not on this node (or damaged): build it from the source, if it is the same
    if _key(found) != key:
        raise DataError(f"{source.name}: the files under {source.root} on {socket.gethostname()} differ from "
                        f"those the search started with (changed since, or another copy)")
    return _open(source, found)


# -- finding a source ---------------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) as a uint8 array.

    torchvision's MNIST classes expect their own folder layout with uncompressed files; the official
    distribution (and Debian's package) ships flat ``.gz`` files, so they are parsed here directly.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # else taken for the cache's write failure (OSError)
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None
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


def _fmnist_files(root: Path) -> list[Path] | None:
    """The four IDX files (train images, labels; test images, labels) under ``root``, or ``None``."""
    found = [_find_idx(root, stem) for stems in _FMNIST_FILES.values() for stem in stems]
    return found if all(found) else None  # type: ignore[return-value]


def _fmnist_arrays(files: list[Path]) -> Arrays:
    tx, ty, vx, vy = (read_idx(p) for p in files)
    return Arrays(tx[:, None], ty.astype(np.int64), vx[:, None], vy.astype(np.int64), 10)


def _fmnist_bundled() -> Arrays:
    arrays = []
    for split in ("train", "t10k"):
        with np.load(io.BytesIO(lzma.decompress((BUNDLED_DIR / f"fashion_mnist_sample_{split}.npz.xz")
                                                .read_bytes()))) as z:
            arrays.append((z["images"][:, None], z["labels"].astype(np.int64)))
    (tx, ty), (vx, vy) = arrays
    return Arrays(tx, ty, vx, vy, 10)


def _fmnist_download() -> bool:
    """torchvision's download into the user cache; ``False`` when offline (fails fast, no retries)."""
    from torchvision.datasets import FashionMNIST

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    try:
        for train in (True, False):
            FashionMNIST(str(CACHE_DIR), train=train, download=True)
        return True
    except Exception:
        return False
    finally:
        socket.setdefaulttimeout(old)


def _locate_fmnist(data_root: Path | None, download: bool) -> str:
    """Fashion-MNIST's folder, first found wins: ``data_root``; ``$NAS_ATTN_DATA``; the system's; the user
    cache; a torchvision download; else :data:`BUNDLED`."""
    if data_root is not None:
        if _fmnist_files(data_root) is None:
            raise DataError(f"--data-root {data_root}: no Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] …)")
        return str(data_root)
    env = os.environ.get("NAS_ATTN_DATA")
    if env:
        if _fmnist_files(Path(env)) is None:
            raise DataError(f"$NAS_ATTN_DATA={env}: no Fashion-MNIST IDX files there")
        return env
    for root in (SYSTEM_FMNIST, CACHE_DIR):
        if _fmnist_files(root) is not None:
            return str(root)
    if download and _fmnist_download() and _fmnist_files(CACHE_DIR) is not None:
        return str(CACHE_DIR)
    return BUNDLED


def _locate_cifar(name: str, data_root: Path | None, download: bool) -> str:
    root = data_root or CACHE_DIR
    if cifar_files(name, root) is None and download:
        from torchvision.datasets import CIFAR10, CIFAR100

        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            (CIFAR10 if name == "cifar10" else CIFAR100)(str(root), train=True, download=True)
        except Exception as exc:  # torchvision raises RuntimeError (bad file) or URLError (offline)
            raise DataError(f"{name}: not found under {root} and could not be downloaded ({exc})") from None
        finally:
            socket.setdefaulttimeout(old)
    if cifar_files(name, root) is None:
        raise DataError(f"{name}: no {name.replace('cifar', 'cifar-')}-python.tar.gz (or its extracted folder) "
                        f"under {root}")
    return str(root)


def _locate(name: str, data_root: Path | None, download: bool) -> str:
    if name == "fashion_mnist":
        return _locate_fmnist(data_root, download)
    if name in ("cifar10", "cifar100"):
        return _locate_cifar(name, data_root, download)
    if name == "imagefolder":
        if data_root is None:
            raise DataError("imagefolder: --data-root must hold train/ and val/ class folders (got None)")
        return str(data_root)
    raise DataError(f"unknown dataset {name!r} (one of {', '.join(DATASETS)})")


def _found(source: DataSource, workers: int | None = None) -> Found:
    """What keys and builds ``source``'s entry (the source files listed, not decoded)."""
    name, root, side = source.name, source.root, source.side
    if name == "fashion_mnist" and root == BUNDLED:
        files = sorted(BUNDLED_DIR.glob("fashion_mnist_sample_*.npz.xz"))
        desc = "bundled stratified sample (nas_attn/_bundled)"
        return Found(name, root, desc, side, _content_key(files), array_builder(name, desc, _fmnist_bundled, side))
    if name == "fashion_mnist":
        files = _fmnist_files(Path(root))
        if files is None:
            raise DataError(f"fashion_mnist: no Fashion-MNIST IDX files under {root}")
        return Found(name, root, root, side, _content_key(files),
                     array_builder(name, root, lambda: _fmnist_arrays(files), side))
    if name in ("cifar10", "cifar100"):
        files = cifar_files(name, Path(root))
        if files is None:
            raise DataError(f"{name}: no {name} archive or folder under {root}")
        return Found(name, root, root, side, _content_key(files),
                     array_builder(name, root, lambda: read_cifar(name, files), side))
    tree = FolderTree.scan(Path(root))
    if source.strict and tree.problems():
        raise DataError(f"imagefolder: {tree.problems()[0]}; --strict-data refuses it")
    return Found(name, root, root, side, tree.key_parts(),
                 folder_builder(tree, side, source.strict, source.quiet, workers))


def _content_key(files: list[Path]) -> tuple:
    """Small source files (IDX, archives) are keyed by content: a copy elsewhere has the same key."""
    return tuple((p.name, file_digest(p)) for p in files)


def _key(found: Found) -> str:
    return digest(found.name, found.side, found.key_parts)


def _open(source: DataSource, found: Found) -> Dataset:
    entry = open_or_build(source.cache_folder(), source.prefix(), _key(found), found.build)
    return _dataset(source, entry)


def _dataset(source: DataSource, entry: CacheEntry) -> Dataset:
    """The dataset of a complete entry; its skipped files and empty folders as warnings (strict: refused)."""
    meta = entry.meta
    problems = [f"{path}: skipped, unreadable ({reason})" for path, reason in meta.skipped]
    problems += list(meta.folder_problems)
    if problems and source.strict:
        raise DataError(f"{source.name}: {problems[0]}; --strict-data refuses it "
                        f"({len(problems)} problem(s), found when {entry.path} was built)")
    a = entry.arrays()
    return Dataset(source.name, meta.source, a["train_x"], np.array(a["train_y"]), a["test_x"], np.array(a["test_y"]),
                   meta.num_classes, meta.mean, meta.std, tuple(first_lines(problems)), source, entry)


def load_dataset(name: str = "fashion_mnist", data_root: str | Path | None = None, input_size: int | None = None,
                 download: bool = True, *, cache_dir: str | Path | None = None, strict: bool = False,
                 quiet: bool = False, workers: int | None = None) -> Dataset:
    """A dataset from its decoded cache entry (decoded first if there is none, or a stale or truncated one).

    Fashion-MNIST sources, first found wins: ``data_root``; ``$NAS_ATTN_DATA``;
    ``/usr/share/datasets/fashion-mnist``; the user cache; torchvision download; the bundled sample.
    CIFAR-10/100: ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` or their extracted folders in
    ``data_root`` (else the user cache; downloaded there by torchvision if allowed). ``imagefolder``:
    ``data_root/train/<class>/…`` and ``data_root/val/<class>/…`` (``val/`` is the test set).

    Args:
        name: one of :data:`DATASETS`.
        data_root: the folder to read it from.
        input_size: the side images are stored at (square); default: their own (28, 32; 224 for a tree).
            Training with random-resized crops wants room around the crop: see :func:`stored_side`.
        download: let torchvision download Fashion-MNIST or CIFAR when no local copy is found.
        cache_dir: the cache folder (default: ``$XDG_CACHE_HOME/nas_attn/decoded``).
        strict: an unreadable image or an empty class folder raises instead of a warning
            (:attr:`Dataset.warnings`).
        quiet: no progress bar while decoding.
        workers: decoding processes (default: every core).

    Raises:
        DataError: unknown dataset, an explicitly given source that holds no such data, a cache folder that
            cannot be written, or (``strict``) an unreadable image or empty class folder.
    """
    root = Path(data_root).expanduser() if data_root else None
    if root is not None and not root.exists():
        raise DataError(f"--data-root {root}: no such directory")
    side = int(input_size or _NATIVE_SIDE.get(name, 224))
    source = DataSource(name, _locate(name, root, download), side, strict,
                        str(Path(cache_dir).expanduser()) if cache_dir else None, quiet)
    return _open(source, _found(source, workers))


def stored_side(input_size: int, augment: str, crop_fraction: float = 0.875) -> int:
    """The side images are stored at for training at ``input_size``: the input size itself for ``pad_crop``;
    ``input_size / crop_fraction`` for ``random_resized_crop`` (256 for 224), room for crops and a centre crop."""
    return input_size if augment == "pad_crop" else int(round(input_size / crop_fraction))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, picked): ``fraction`` of each class picked with a seeded permutation.

    The classes are grouped with one stable sort (ascending indices within a class), so a million labels
    split in a fraction of a second.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    picked = [rng.permutation(idx)[: int(round(fraction * len(idx)))] for idx in np.split(order, starts[1:])]
    chosen = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(labels)), chosen, assume_unique=True)
    return rest, chosen


def make_splits(ds: Dataset, val_fraction: float = 0.1, seed: int = 0, train_subset: int | None = None,
                val_subset: int | None = None, test_subset: int | None = None) -> Splits:
    """The seeded stratified validation split, optionally with stratified subsets of the training, validation
    and test sets (for small budgets).

    The splits index the dataset's arrays (no images are copied).
    """
    rest, val = stratified_split(ds.train_y, val_fraction, seed)
    if train_subset and train_subset < len(rest):
        _, keep = stratified_split(ds.train_y[rest], train_subset / len(rest), seed + 1)
        rest = rest[keep]
    if val_subset and val_subset < len(val):
        _, keep = stratified_split(ds.train_y[val], val_subset / len(val), seed + 2)
        val = val[keep]
    test_y = np.asarray(ds.test_y)
    test = ImageSet(ds.test_x, test_y)
    if test_subset and test_subset < len(test_y):
        _, keep = stratified_split(test_y, test_subset / len(test_y), seed + 3)
        test = ImageSet(ds.test_x, test_y[keep], keep)
    return Splits(ImageSet(ds.train_x, ds.train_y[rest], rest), ImageSet(ds.train_x, ds.train_y[val], val),
                  test, ds.num_classes, tuple(ds.mean), tuple(ds.std))
