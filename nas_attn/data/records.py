"""The records of a decoded dataset: where it comes from (:class:`DataSource`), the dataset itself
(:class:`Dataset`) and what a trial needs to open it on its node (:class:`DataHandle`), with how each is opened
from its cache entry."""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas_attn.data.cache import CacheEntry, digest, open_or_build, read_entry
from nas_attn.data.sources import Found, find, first_lines
from nas_attn.data.splits import Splits, SplitSpec, make_splits
from nas_attn.dirs import decoded_cache
from nas_attn.errors import DataError


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
        return Path(self.cache_dir).expanduser() if self.cache_dir else decoded_cache()

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
    found = find(source)  # not on this node (or damaged): build it from the source, if it is the same
    if found.key() != key:
        raise DataError(f"{source.name}: the files under {source.root} on {socket.gethostname()} differ from "
                        f"those the search started with (changed since, or another copy)")
    return open_found(source, found)


def open_found(source: DataSource, found: Found) -> Dataset:
    entry = open_or_build(source.cache_folder(), source.prefix(), found.key(), found.build, strict=source.strict)
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
