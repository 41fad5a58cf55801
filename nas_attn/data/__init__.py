"""Datasets → a decoded cache on local disk → the splits a trial trains, validates and tests on (docs/data.md).

Each dataset is decoded once into uint8 arrays ``(N, C, S, S)`` (:mod:`nas_attn.data.cache`, under
``$XDG_CACHE_HOME/nas_attn/decoded`` unless ``cache_dir`` says otherwise) and memory-mapped by every later
run. :func:`load_dataset` finds the source, builds or opens its entry and returns a :class:`Dataset`;
:func:`make_splits` carves the seeded, stratified validation split from the training set (row indices, no
copy). A search hands its trials a :class:`DataHandle` — where the entry is, how to split it, its mean and std
— and each trial opens the entry on its own node (building it there, under a lock, if the node lacks it).

This is the public face; the parts live beside their kin: :mod:`~nas_attn.data.records` (the records),
:mod:`~nas_attn.data.splits`, :mod:`~nas_attn.data.sources` (readers: Fashion-MNIST, CIFAR, image folders),
:mod:`~nas_attn.data.locate` (finding a source, :func:`load_dataset`). Importing it is torch-free (the space
validation reads :data:`DATASETS`).
"""

from nas_attn.data.locate import load_dataset, stored_side
from nas_attn.data.records import DataHandle, Dataset, DataSource
from nas_attn.data.sources import BUNDLED, BUNDLED_DIR, DATASETS, read_idx
from nas_attn.data.splits import ImageSet, Splits, SplitSpec, make_splits, stratified_split

__all__ = [
    "BUNDLED", "BUNDLED_DIR", "DATASETS", "DataHandle", "DataSource", "Dataset", "ImageSet", "SplitSpec", "Splits",
    "load_dataset", "make_splits", "read_idx", "stored_side", "stratified_split",
]
