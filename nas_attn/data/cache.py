"""The decoded-dataset cache: each dataset decoded once into uint8 arrays on local disk, memory-mapped after.

An *entry* is a folder ``<cache>/<dataset>-<side>px-<root digest>-<key>/`` holding raw arrays (``train_x.u8``
…, read with ``numpy.memmap``) and ``meta.json`` (shapes, classes, mean/std, skipped files). The key is a
digest of the source files (relative paths and sizes with modification times, or their contents where that is
cheap) and of the stored size, so a changed source gets a new entry and the stale one is removed. The root
digest in the name scopes that removal to one source folder: two trees at the same side do not evict each
other's entries; the price is that a copy of the same files in another folder is decoded again.

Concurrency: an entry is built in a temporary folder and renamed into place, complete, under an exclusive
``fcntl.flock`` on ``<cache>/.<prefix>.lock``; readers take no lock (an entry in place never changes) and
check every array's size, and a fingerprint of its content, against ``meta.json``, so a truncated or damaged
entry is rebuilt. Several trial processes on a node opening a missing entry: the first builds it, the others
wait on the lock and then open it.

Durability: every array and ``meta.json`` are fsynced before the folder is renamed into place, and the cache
folder after: a power loss leaves no entry or a whole one, not one of the right size full of zeros. The
fingerprint (sampled rows, so damage confined to rows between the samples goes unseen) catches what a disk
that acknowledged writes it had not made, or a hand, did to an entry in place. Torch-free.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas_attn.errors import DataError

#: bumped whenever what an entry holds or how images are decoded changes: old entries are then rebuilt
#: (2: ``meta.json`` holds the arrays' fingerprints)
FORMAT = 2
META = "meta.json"
#: rows of a multi-dimensional array hashed for its fingerprint: the first, the last, evenly spaced between
#: (about 6 MB of 256-px images, read in a few ms when an entry is opened)
FINGERPRINT_ROWS = 32


@dataclass(frozen=True)
class ArraySpec:
    """One array of an entry: a raw file ``<name>.<dtype>`` of this dtype and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class EntryMeta:
    """What ``meta.json`` of an entry says (written last: an entry without it is incomplete)."""

    key: str
    dataset: str
    source: str
    side: int
    num_classes: int
    arrays: dict[str, ArraySpec]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    #: (file, reason) of every image that could not be decoded and was left out
    skipped: tuple[tuple[str, str], ...] = ()
    #: class folders with no image (``<folder>: what became of it``)
    folder_problems: tuple[str, ...] = ()
    build_s: float = 0.0
    format: int = FORMAT
    #: array name → :func:`fingerprint` of its file
    fingerprints: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> EntryMeta:
        raw: dict[str, Any] = json.loads(text)
        raw["arrays"] = {k: ArraySpec(v["dtype"], tuple(v["shape"])) for k, v in raw["arrays"].items()}
        for name in ("mean", "std", "classes", "folder_problems"):
            raw[name] = tuple(raw.get(name, ()))
        raw["skipped"] = tuple(tuple(s) for s in raw.get("skipped", ()))
        return cls(**raw)


def array_path(folder: Path, name: str, spec: ArraySpec) -> Path:
    return folder / f"{name}.{np.dtype(spec.dtype).name}"


@dataclass(frozen=True)
class CacheEntry:
    """A complete entry on disk."""

    path: Path
    meta: EntryMeta
    #: this call decoded it (``False``: it was there already)
    built: bool = False
    #: why it was built: what was wrong with the entry on disk (``not built``, ``… (truncated)``, ``… (damaged)``)
    why: str = ""

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, memory-mapped read-only (nothing is read until used)."""
        return {name: np.memmap(array_path(self.path, name, spec), spec.dtype, "r", shape=spec.shape)
                for name, spec in self.meta.arrays.items()}


def digest(*parts: Any) -> str:
    """sha256 of ``parts`` written as JSON (the key of an entry)."""
    return hashlib.sha256(json.dumps([FORMAT, *parts], default=str).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's content."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fingerprint(path: Path, spec: ArraySpec) -> str:
    """blake2b of a fixed sample of the array file's rows (a one-dimensional array, the labels, whole).

    Cheap enough to check at every open, and it tells an array of the right size whose content was lost
    (zeros after a power loss) or overwritten: a size check alone cannot.
    """
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        if len(spec.shape) <= 1 or spec.shape[0] == 0:
            h.update(f.read())
            return h.hexdigest()
        row_bytes = spec.nbytes // spec.shape[0]
        for row in np.unique(np.linspace(0, spec.shape[0] - 1, FINGERPRINT_ROWS).round().astype(np.int64)):
            f.seek(int(row) * row_bytes)
            h.update(f.read(row_bytes))
    return h.hexdigest()


def read_entry(folder: Path, key: str) -> tuple[EntryMeta | None, str]:
    """The entry's metadata if it is complete, intact and of ``key``; else ``None`` and why not."""
    try:
        meta = EntryMeta.from_json((folder / META).read_text())
    except FileNotFoundError:
        return None, "not built"
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, f"unreadable {META} ({type(exc).__name__})"
    if meta.format != FORMAT or meta.key != key:
        return None, "of another format or source"
    for name, spec in meta.arrays.items():
        path = array_path(folder, name, spec)
        try:
            size = path.stat().st_size if path.exists() else -1
            if size != spec.nbytes:
                return None, f"{path.name} has {size} bytes, not {spec.nbytes} (truncated)"
            if fingerprint(path, spec) != meta.fingerprints.get(name):
                return None, f"{path.name}: its content differs from the fingerprint in {META} (damaged)"
        except OSError as exc:  # removed or unreadable since it was listed: rebuilt like a truncated one
            return None, f"{path.name}: unreadable ({exc.strerror or exc})"
    return meta, ""


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if need be), held for the ``with`` block; waits for it."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class EntryWriter:
    """Builds an entry in a temporary folder: arrays created at their final size, filled, maybe shortened."""

    folder: Path
    key: str
    specs: dict[str, ArraySpec] = field(default_factory=dict)

    def create(self, name: str, dtype: str | type, shape: tuple[int, ...]) -> np.memmap:
        """A new array of the entry, writable; refused when the disk has no room for it."""
        spec = ArraySpec(np.dtype(dtype).name, tuple(int(n) for n in shape))
        free = shutil.disk_usage(self.folder).free
        if spec.nbytes > free:
            raise DataError(f"cache {self.folder.parent}: {name} needs {spec.nbytes / 1e9:.1f} GB, "
                            f"{free / 1e9:.1f} GB free (--cache-dir elsewhere?)")
        self.specs[name] = spec
        path = array_path(self.folder, name, spec)
        if spec.nbytes == 0:
            path.touch()
            return np.zeros(spec.shape, spec.dtype).view(np.memmap)
        return np.memmap(path, spec.dtype, "w+", shape=spec.shape)

    def keep_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Shorten array ``name`` to its ``rows`` (sorted), moved down in place; returns the short array."""
        spec = self.specs[name]
        path = array_path(self.folder, name, spec)
        full = np.memmap(path, spec.dtype, "r+", shape=spec.shape)
        row_bytes = spec.nbytes // max(1, spec.shape[0])
        step = max(1, (1 << 26) // max(1, row_bytes))
        for start in range(0, len(rows), step):  # rows[i] >= i: every move is downwards, chunk by chunk
            part = rows[start:start + step]
            full[start:start + len(part)] = full[part]
        full.flush()
        del full
        short = ArraySpec(spec.dtype, (len(rows), *spec.shape[1:]))
        os.truncate(path, short.nbytes)
        self.specs[name] = short
        return np.memmap(path, spec.dtype, "r+", shape=short.shape) if short.nbytes else np.zeros(short.shape,
                                                                                                  spec.dtype)


Builder = Callable[[EntryWriter], EntryMeta]


def open_or_build(cache_dir: Path, prefix: str, key: str, build: Builder) -> CacheEntry:
    """The entry ``<prefix>-<key>`` of ``cache_dir``: opened if complete, else built (once, under the lock).

    Args:
        cache_dir: the cache folder (created if need be).
        prefix: what the source is (dataset, stored size, where): entries of the same prefix and another key
            are stale and removed after a build.
        key: the digest of the source files and stored size.
        build: fills a writer's arrays and returns the entry's metadata (called only when the entry is
            missing, truncated or unreadable).

    Raises:
        DataError: the cache folder cannot be created or written; or what ``build`` raises.
    """
    final = cache_dir / f"{prefix}-{key[:16]}"
    meta, _ = read_entry(final, key)
    if meta is not None:
        return CacheEntry(final, meta)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(cache_dir / f".{prefix}.lock"):
            meta, why = read_entry(final, key)  # another process may have built it while this one waited
            if meta is not None:
                return CacheEntry(final, meta)
            _remove_leftovers(cache_dir, prefix, keep=None)
            return CacheEntry(final, _build(final, key, build), built=True, why=why)
    except OSError as exc:
        raise DataError(f"cache {cache_dir}: cannot write there ({exc.strerror or exc}); --cache-dir elsewhere?") \
            from None


def _build(final: Path, key: str, build: Builder) -> EntryMeta:
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        t0 = time.perf_counter()
        writer = EntryWriter(tmp, key)
        meta = dataclasses.replace(build(writer), arrays=dict(writer.specs), key=key,
                                   build_s=round(time.perf_counter() - t0, 3))
        meta = dataclasses.replace(meta, fingerprints={name: fingerprint(array_path(tmp, name, spec), spec)
                                                      for name, spec in meta.arrays.items()})
        _publish(tmp, final, meta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_leftovers(final.parent, final.name.rsplit("-", 1)[0], keep=final.name)
    return meta


def _publish(tmp: Path, final: Path, meta: EntryMeta) -> None:
    """``tmp`` renamed to ``final``, each step on disk before the next (the page cache writes back in any
    order: without the fsyncs a power loss could keep the rename and ``meta.json`` but lose the arrays)."""
    for name, spec in meta.arrays.items():
        # the arrays were written through memory maps, whose pages are the file's page cache: fsync writes them
        fd = os.open(array_path(tmp, name, spec), os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    with open(tmp / META, "w") as f:
        f.write(meta.to_json())
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():  # truncated or damaged: moved aside, then removed
        trash = final.parent / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    """fsync a folder (its entries: files created, renamed), where the OS and file system allow it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is then as durable as they make it
        pass
    finally:
        os.close(fd)


def _remove_leftovers(cache_dir: Path, prefix: str, keep: str | None) -> None:
    """Under the prefix's lock: half-built folders of killed builders, and entries of older keys (stale)."""
    for path in cache_dir.glob(f".tmp-{prefix}-*"):
        shutil.rmtree(path, ignore_errors=True)
    if keep is None:
        return
    for path in cache_dir.glob(f"{prefix}-*"):
        if path.name != keep and path.is_dir() and len(path.name) == len(keep):
            shutil.rmtree(path, ignore_errors=True)
