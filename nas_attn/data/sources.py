"""What fills a cache entry: datasets held as arrays (Fashion-MNIST, CIFAR) and ``ImageFolder`` trees.

Each source is located by :mod:`nas_attn.data.locate`, described here by a :class:`Found` (what keys the
cache, how to build the entry: :func:`find`), and built into an :class:`~nas_attn.data.cache.EntryWriter`.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas_attn.data.cache import EntryMeta, EntryWriter, digest
from nas_attn.data.decode import FolderListing, Target, decode_all, list_image_folder
from nas_attn.errors import DataError
from nas_attn.fsutil import file_digest

if TYPE_CHECKING:
    from nas_attn.data.records import DataSource

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder")
#: the ``root`` of the sample of Fashion-MNIST that ships inside the package
BUNDLED = "bundled"
BUNDLED_DIR = Path(__file__).parent.parent / "_bundled"
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: images sampled for the per-channel mean and std (every k-th training image, as many as this or more) …
STATS_SAMPLE = 10_000
#: … and at most this many pixels a channel (512 images of 256 px): plenty for two figures per channel
STATS_PIXELS = 1 << 25


@dataclass(frozen=True)
class Found:
    """A located source: what it is, what keys its cache entry, and how to build that entry."""

    name: str
    root: str
    description: str
    side: int
    key_parts: tuple[Any, ...]
    build: Callable[[EntryWriter], EntryMeta]

    def key(self) -> str:
        """The entry's key: a digest of the dataset, the stored side and the source files."""
        return digest(self.name, self.side, self.key_parts)


def find(source: DataSource, workers: int | None = None) -> Found:
    """What keys and builds ``source``'s entry (the source files listed, not decoded)."""
    name, root, side = source.name, source.root, source.side
    if name == "fashion_mnist" and root == BUNDLED:
        files = sorted(BUNDLED_DIR.glob("fashion_mnist_sample_*.npz.xz"))
        desc = "bundled stratified sample (nas_attn/_bundled)"
        return Found(name, root, desc, side, content_key(files), array_builder(name, desc, fmnist_bundled, side))
    if name == "fashion_mnist":
        files = fmnist_files(Path(root))
        if files is None:
            raise DataError(f"fashion_mnist: no Fashion-MNIST IDX files under {root}")
        return Found(name, root, root, side, content_key(files),
                     array_builder(name, root, lambda: fmnist_arrays(files), side))
    if name in ("cifar10", "cifar100"):
        files = cifar_files(name, Path(root))
        if files is None:
            raise DataError(f"{name}: no {name} archive or folder under {root}")
        return Found(name, root, root, side, content_key(files),
                     array_builder(name, root, lambda: read_cifar(name, files), side))
    tree = FolderTree.scan(Path(root))
    if source.strict and tree.problems():
        raise DataError(f"imagefolder: {tree.problems()[0]}; --strict-data refuses it")
    return Found(name, root, root, side, tree.key_parts(),
                 folder_builder(tree, side, source.strict, source.quiet, workers))


def content_key(files: list[Path]) -> tuple:
    """Small source files (IDX, archives) are keyed by content: a copy elsewhere has the same key."""
    return tuple((p.name, file_digest(p)) for p in files)


# -- datasets held as arrays ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arrays:
    """A whole small dataset in memory, at its own size: ``(N, C, H, W)`` uint8 images and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int


def array_builder(name: str, description: str, read: Callable[[], Arrays], side: int) -> Callable:
    """The builder of an entry holding ``read()``'s arrays resized to ``side`` (unchanged at their own size)."""

    def build(writer: EntryWriter) -> EntryMeta:
        data = read()
        for split in ("train", "test"):
            x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
            out = writer.create(f"{split}_x", np.uint8, (len(x), x.shape[1], side, side))
            resize_into(x, out)
            writer.create(f"{split}_y", np.int64, (len(y),))[:] = y
        train_x = np.memmap(writer.folder / "train_x.uint8", np.uint8, "r", shape=writer.specs["train_x"].shape)
        mean, std = channel_stats(train_x)
        return EntryMeta("", name, description, side, data.num_classes, {}, mean, std)

    return build


def resize_into(x: np.ndarray, out: np.ndarray) -> None:
    """``x`` resized to ``out``'s size (antialiased bilinear, torch's), written chunk by chunk into ``out``."""
    if x.shape[2:] == out.shape[2:]:
        out[:] = x
        return
    import torch
    import torch.nn.functional as F

    size = out.shape[2:]
    step = max(1, (1 << 25) // int(np.prod(out.shape[1:])))  # ~128 MB of float32 per chunk
    for i in range(0, len(x), step):
        chunk = torch.from_numpy(np.require(x[i:i + step], requirements="W")).float()
        y = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[i:i + step] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x / 255`` over every k-th image (about :data:`STATS_SAMPLE`, fewer for
    large images: :data:`STATS_PIXELS`), read in chunks."""
    sample = min(STATS_SAMPLE, max(1, STATS_PIXELS // max(1, int(np.prod(x.shape[2:])))))
    rows = range(0, len(x), max(1, len(x) // sample))
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    count = 0
    step = max(1, (1 << 24) // max(1, int(np.prod(x.shape[1:]))))
    for start in range(0, len(rows), step):
        chunk = np.asarray(x[rows[start:start + step]], np.float64) / 255
        total += chunk.sum((0, 2, 3))
        squares += (chunk ** 2).sum((0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(1, count)
    std = np.sqrt(np.maximum(squares / max(1, count) - mean ** 2, 0))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


# -- CIFAR archives ---------------------------------------------------------------------------------------

# -- Fashion-MNIST: IDX files, or the sample inside the package ----------------------------------------

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


def find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        for candidate in (root / name, root / "FashionMNIST" / "raw" / name):
            if candidate.is_file():
                return candidate
    return None


def fmnist_files(root: Path) -> list[Path] | None:
    """The four IDX files (train images, labels; test images, labels) under ``root``, or ``None``."""
    found = [find_idx(root, stem) for stems in _FMNIST_FILES.values() for stem in stems]
    return found if all(found) else None  # type: ignore[return-value]


def fmnist_arrays(files: list[Path]) -> Arrays:
    tx, ty, vx, vy = (read_idx(p) for p in files)
    return Arrays(tx[:, None], ty.astype(np.int64), vx[:, None], vy.astype(np.int64), 10)


def fmnist_bundled() -> Arrays:
    arrays = []
    for split in ("train", "t10k"):
        with np.load(io.BytesIO(lzma.decompress((BUNDLED_DIR / f"fashion_mnist_sample_{split}.npz.xz")
                                                .read_bytes()))) as z:
            arrays.append((z["images"][:, None], z["labels"].astype(np.int64)))
    (tx, ty), (vx, vy) = arrays
    return Arrays(tx, ty, vx, vy, 10)


CIFAR_LAYOUT = {  # archive, folder inside it, training batches, test batch, label key
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                "test_batch", b"labels", 10),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", b"fine_labels", 100),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The CIFAR batches are Python pickles; this one rebuilds numpy arrays and plain data, nothing else
    (a pickle can otherwise run any code). ``_codecs.encode``: how Python 3 pickles bytes at protocol 2."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


def cifar_files(name: str, root: Path) -> list[Path] | None:
    """The archive, or the extracted batches, of ``name`` under ``root``; ``None`` if neither is there."""
    archive, folder, train, test, _, _ = CIFAR_LAYOUT[name]
    if (root / archive).is_file():
        return [root / archive]
    batches = [root / folder / b for b in (*train, test)]
    return batches if all(p.is_file() for p in batches) else None


def read_cifar(name: str, files: list[Path]) -> Arrays:
    """CIFAR-10/100 from the official archive or its extracted folder (what :func:`cifar_files` found).

    torchvision's CIFAR classes check the official files' MD5 sums and so refuse any other archive in the
    same format (a subset, a test's); the format itself is a few pickled dictionaries, read here.

    Raises:
        DataError: a missing batch, or a batch that is not a CIFAR batch.
    """
    _, folder, train, test, label_key, classes = CIFAR_LAYOUT[name]
    if len(files) == 1:
        try:
            with tarfile.open(files[0]) as tar:
                blobs = {b: _member(tar, f"{folder}/{b}", files[0]) for b in (*train, test)}
        except (tarfile.ReadError, EOFError) as exc:  # random bytes, a truncated download
            raise DataError(f"{files[0]}: not a readable tar archive ({exc})") from None
    else:
        blobs = {p.name: p.read_bytes() for p in files}
    parts = [_cifar_batch(blobs[b], label_key, f"{files[0]}:{b}") for b in (*train, test)]
    train_x = np.concatenate([p[0] for p in parts[:-1]])
    train_y = np.concatenate([p[1] for p in parts[:-1]])
    return Arrays(train_x, train_y, parts[-1][0], parts[-1][1], classes)


def _member(tar: tarfile.TarFile, member: str, archive: Path) -> bytes:
    try:
        f = tar.extractfile(member)
    except KeyError:
        f = None
    if f is None:
        raise DataError(f"{archive}: no {member} in the archive (not a CIFAR archive?)")
    return f.read()


def _cifar_batch(blob: bytes, label_key: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
        x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[label_key], np.int64)
    except Exception as exc:  # a damaged or foreign file: say which, in one line
        raise DataError(f"{where}: not a CIFAR batch ({type(exc).__name__}: {exc})") from None
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} images but {len(y)} labels")
    return x, y


# -- ImageFolder trees ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FolderTree:
    """An ``ImageFolder`` tree: ``train/`` and ``val/``, the classes those of ``train/``."""

    root: Path
    train: FolderListing
    val: FolderListing

    @classmethod
    def scan(cls, root: Path) -> FolderTree:
        """List both folders: the classes are the folders of ``train/`` with images in them.

        Raises:
            DataError: a missing folder, one without images, or a ``val/`` class folder unknown to ``train/``.
        """
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DataError(f"imagefolder: --data-root must hold train/ and val/ class folders (got {root})")
        train = list_image_folder(root / "train")
        known = {*train.classes, *train.empty_classes}
        unknown = [e.name for e in sorted(os.scandir(root / "val"), key=lambda e: e.name)
                   if e.is_dir() and e.name not in known]
        if unknown:
            raise DataError(f"imagefolder: {root / 'val'}: class folder(s) {', '.join(unknown[:5])} not in "
                            f"{root / 'train'}")
        val = list_image_folder(root / "val", train.classes)
        for listing in (train, val):
            if not listing.files:
                raise DataError(f"imagefolder: {listing.root} has no images (class folders of .jpg, .png … files)")
        return cls(root, train, val)

    def key_parts(self) -> tuple[Any, ...]:
        return tuple((split, listing.classes, [(f.relpath, f.label, f.size, f.mtime_ns) for f in listing.files])
                     for split, listing in (("train", self.train), ("val", self.val)))

    def problems(self) -> tuple[str, ...]:
        """Class folders with no image: left out of the classes (in ``train/``, and then their ``val/``
        images too), or a class with nothing to test it on (in ``val/``)."""
        out = [f"{self.train.root / c}: empty class folder, class left out" + (
               f" (with its images in {self.val.root / c})" if (self.val.root / c).is_dir() else "")
               for c in self.train.empty_classes]
        out += [f"{self.val.root / c}: empty class folder (no test image of this class)"
                for c in self.val.empty_classes]
        return tuple(out)


def folder_builder(tree: FolderTree, side: int, strict: bool, quiet: bool, workers: int | None = None) -> Callable:
    """The builder of an entry decoding ``tree`` at ``side`` (``strict``: the first unreadable file stops it)."""

    def build(writer: EntryWriter) -> EntryMeta:
        skipped: list[tuple[str, str]] = []
        for split, listing in (("train", tree.train), ("test", tree.val)):
            skipped += _decode_split(writer, split, listing, side, strict, quiet, workers)
        train_x = np.memmap(writer.folder / "train_x.uint8", np.uint8, "r", shape=writer.specs["train_x"].shape)
        mean, std = channel_stats(train_x)
        return EntryMeta("", "imagefolder", str(tree.root), side, len(tree.train.classes), {}, mean, std,
                         classes=tree.train.classes, skipped=tuple(skipped),
                         folder_problems=tree.problems())

    return build


def _decode_split(writer: EntryWriter, split: str, listing: FolderListing, side: int, strict: bool, quiet: bool,
                  workers: int | None) -> list[tuple[str, str]]:
    files = listing.files
    writer.create(f"{split}_x", np.uint8, (len(files), 3, side, side))
    target = Target(str(writer.folder / f"{split}_x.uint8"), len(files), side)
    failed = decode_all(target, [str(listing.root / f.relpath) for f in files], workers=workers, quiet=quiet,
                        label=f"decoding {listing.root.name}/ at {side} px", stop_on_error=strict)
    skipped = [(str(listing.root / files[row].relpath), reason) for row, reason in failed]
    if skipped and strict:
        path, reason = skipped[0]
        raise DataError(f"imagefolder: {path}: unreadable image ({reason}); --strict-data refuses it")
    writer.create(f"{split}_y", np.int64, (len(files),))[:] = [f.label for f in files]
    if failed:
        keep = np.setdiff1d(np.arange(len(files)), [row for row, _ in failed])
        writer.keep_rows(f"{split}_x", keep)
        writer.keep_rows(f"{split}_y", keep)
    return skipped


def first_lines(items: Iterable[str], limit: int = 10) -> list[str]:
    """At most ``limit`` of ``items``, then one line saying how many more there are."""
    items = list(items)
    return items[:limit] + ([f"… and {len(items) - limit} more"] if len(items) > limit else [])
