"""The splits a trial trains, validates and tests on: rows of a decoded dataset's arrays, carved by
:func:`make_splits` (seeded, stratified; no images copied)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nas_attn.data.records import Dataset


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
