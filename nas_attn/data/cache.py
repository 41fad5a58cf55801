"""The decoded-dataset cache: each dataset decoded once into uint8 arrays on local disk, memory-mapped after.

An *entry* is a folder ``<cache>/<dataset>-<side>px-<root digest>-<key>/`` holding raw arrays (``train_x.u8``
…, read with ``numpy.memmap``) and ``meta.json`` (shapes, classes, mean/std, skipped files). The key is a
digest of the source files (relative paths and sizes with modification times, or their contents where that is
cheap) and of the stored size, so a changed source gets a new entry and the stale one is removed. The root
digest in the name scopes that removal to one source folder: two trees at the same side do not evict each
other's entries; the price is that a copy of the same files in another folder is decoded again.

Concurrency: an entry is built in a temporary folder and renamed into place, complete, under an exclusive
``fcntl.flock`` on ``<cache>/.<prefix>.lock``; readers take no lock (an entry in place never changes) and
check every array's size, and its content (see Integrity), against ``meta.json``, so a truncated or damaged
entry is rebuilt. Several trial processes on a node opening a missing entry: the first builds it, the others
wait on the lock and then open it.

Durability: every array and ``meta.json`` are fsynced before the folder is renamed into place, and the cache
folder after: a power loss leaves no entry or a whole one, not one of the right size full of zeros.

Integrity: ``meta.json`` holds a crc32 of every 4 MiB chunk of every array, written at build time. An entry is
verified whole (every chunk) when it is opened, unless its files are provably untouched since the last
verification: ``.verified`` records each array's inode, size, mtime and ctime (in ns) as they were then, and
any write to a file changes its ctime, which user space cannot set back. So a changed entry (a hand, a
program, a restored copy) is read in full once, and a 64 KiB overwrite anywhere is caught at the next open;
damage that bypasses the file system (a failing disk) is caught only where ``.verified`` is missing or stale.
Verifying a 22,000-image 256-px entry (4.3 GB) takes seconds, far over 5 % of a run's set-up, at every open;
the stamp check is a few ``stat`` calls (``scripts/bench_data.py --checksums`` measures both). Torch-free.
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
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas_attn.errors import DataError

#: bumped whenever what an entry holds or how images are decoded changes: old entries are then rebuilt
#: (2: ``meta.json`` holds the arrays' fingerprints; 3: a crc32 of every chunk instead)
FORMAT = 3
META = "meta.json"
#: what ``.verified`` is called: the arrays' file identities when every chunk last matched its checksum
STAMP = ".verified"
#: bytes of an array per checksum (the damage a mismatch locates; crc32 runs at about 2 GB/s)
CHUNK_BYTES = 4 << 20


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
    #: array name → crc32 of each ``chunk_bytes`` of its file (:func:`chunk_checksums`)
    checksums: dict[str, list[int]] = field(default_factory=dict)
    chunk_bytes: int = CHUNK_BYTES

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


def chunk_checksums(path: Path, chunk_bytes: int = CHUNK_BYTES) -> list[int]:
    """crc32 of each ``chunk_bytes`` of the file (the last chunk may be shorter)."""
    out = []
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk_bytes)
        view = memoryview(buf)
        while n := f.readinto(buf):
            out.append(zlib.crc32(view[:n]))
    return out


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stamp(folder: Path, meta: EntryMeta) -> dict[str, list[int]]:
    return {name: _identity(array_path(folder, name, spec)) for name, spec in meta.arrays.items()}


def _stamped(folder: Path, meta: EntryMeta) -> bool:
    """The arrays are the very files (same inode, size, mtime and ctime) that last passed :func:`verify`."""
    try:
        return json.loads((folder / STAMP).read_text()) == _stamp(folder, meta)
    except (OSError, ValueError):
        return False


def write_stamp(folder: Path, stamp: dict[str, list[int]]) -> None:
    """Record that the arrays of ``stamp`` (:func:`_stamp`, taken before they were verified: a write since
    then changes their ctime and so voids it) matched their checksums; skipped in a read-only folder."""
    tmp = folder / f"{STAMP}.{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(stamp))
        os.replace(tmp, folder / STAMP)  # atomic: readers racing to stamp write the same content
    except OSError:
        tmp.unlink(missing_ok=True)


def verify(folder: Path, meta: EntryMeta) -> str:
    """Every chunk of every array against its checksum: ``""``, or which chunk differs (``… (damaged)``)."""
    for name, spec in meta.arrays.items():
        path = array_path(folder, name, spec)
        got, want = chunk_checksums(path, meta.chunk_bytes), meta.checksums.get(name)
        if want is None or len(got) != len(want):
            return f"{path.name}: {len(got)} chunks, {META} lists {len(want or ())} (damaged)"
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            if a != b:
                start = i * meta.chunk_bytes
                return (f"{path.name}: bytes {start}-{min(start + meta.chunk_bytes, spec.nbytes) - 1} differ from "
                        f"their checksum in {META} (damaged)")
    return ""


def read_entry(folder: Path, key: str) -> tuple[EntryMeta | None, str]:
    """The entry's metadata if it is complete, intact and of ``key``; else ``None`` and why not.

    Verified chunk by chunk unless its ``.verified`` stamp shows its files untouched since the last time.
    """
    try:
        meta = EntryMeta.from_json((folder / META).read_text())
    except FileNotFoundError:
        return None, "not built"
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, f"unreadable {META} ({type(exc).__name__})"
    if meta.format != FORMAT or meta.key != key:
        return None, "of another format or source"
    try:
        for name, spec in meta.arrays.items():
            path = array_path(folder, name, spec)
            size = path.stat().st_size if path.exists() else -1
            if size != spec.nbytes:
                return None, f"{path.name} has {size} bytes, not {spec.nbytes} (truncated)"
        if _stamped(folder, meta):
            return meta, ""
        stamp = _stamp(folder, meta)
        damage = verify(folder, meta)
    except OSError as exc:  # removed or unreadable since it was listed: rebuilt like a truncated one
        return None, f"unreadable ({exc.strerror or exc})"
    if damage:
        return None, damage
    write_stamp(folder, stamp)
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


def open_or_build(cache_dir: Path, prefix: str, key: str, build: Builder, *, strict: bool = False) -> CacheEntry:
    """The entry ``<prefix>-<key>`` of ``cache_dir``: opened if complete, else built (once, under the lock).

    Args:
        cache_dir: the cache folder (created if need be).
        prefix: what the source is (dataset, stored size, where): entries of the same prefix and another key
            are stale and removed after a build.
        key: the digest of the source files and stored size.
        build: fills a writer's arrays and returns the entry's metadata (called only when the entry is
            missing, truncated, damaged or unreadable).
        strict: a truncated or damaged entry is an error (one line) instead of being rebuilt.

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
            if strict and why.endswith(("(damaged)", "(truncated)")):
                raise DataError(f"cache entry {final}: {why}; --strict-data refuses to rebuild it "
                                f"(remove the folder, or run without --strict-data)")
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
        meta = dataclasses.replace(meta, chunk_bytes=CHUNK_BYTES, checksums={
            name: chunk_checksums(array_path(tmp, name, spec)) for name, spec in meta.arrays.items()})
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
    # checksummed from these very files, after their last write (renaming the folder keeps their inodes)
    write_stamp(tmp, _stamp(tmp, meta))
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
