"""Image files → square uint8 arrays, decoded in parallel straight into a memory-mapped file.

Torch-free (PIL and numpy only), so that the decoding processes start fast. Used to fill the decoded-dataset
cache (:mod:`nas_attn.data.cache`) from an ``ImageFolder`` tree.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: the extensions torchvision's ``ImageFolder`` accepts (compared lower-case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: images per task handed to a decoding process: large enough to amortise the hand-over, small enough for an
#: even load and a smooth progress bar
CHUNK = 64


@dataclass(frozen=True)
class ImageFile:
    """One image of a folder tree: its path relative to the tree's root, its label, and what keys the cache."""

    relpath: str
    label: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FolderListing:
    """The images of one ``split/`` folder (``train/`` or ``val/``) of an ``ImageFolder`` tree; ``empty_classes``:
    the class folders with no image."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[ImageFile, ...]
    empty_classes: tuple[str, ...]


def list_image_folder(folder: Path, classes: Sequence[str] | None = None) -> FolderListing:
    """The images of ``folder/<class>/…`` (sub-folders searched too), sorted as torchvision's ``ImageFolder``.

    torchvision's ``make_dataset`` does not return the sizes and modification times that key the cache;
    ``os.scandir`` gives them with the listing, without a ``stat`` per file on most file systems.

    Args:
        folder: the split's folder; every sub-folder is a class.
        classes: the class names to use, in label order (a ``val/`` folder takes those of ``train/``);
            ``None``: the sub-folders that hold images (an empty one cannot be learnt, and is reported in
            ``empty_classes``).
    """
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    listed: dict[str, list[ImageFile]] = {}
    for name in found:
        if classes is None or name in classes:
            listed[name] = []
            _walk(folder, folder / name, listed[name])
    empty = tuple(name for name, files in listed.items() if not files)
    classes = tuple(name for name in found if listed[name]) if classes is None else tuple(classes)
    files = [dataclasses.replace(f, label=label) for label, name in enumerate(classes) for f in listed.get(name, [])]
    return FolderListing(folder, classes, tuple(files), empty)


def _walk(root: Path, directory: Path, out: list[ImageFile]) -> None:
    entries = sorted(os.scandir(directory), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            _walk(root, Path(entry.path), out)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
            st = entry.stat()
            out.append(ImageFile(os.path.relpath(entry.path, root), -1, st.st_size, st.st_mtime_ns))


def to_rgb(image: Image.Image) -> Image.Image:
    """Grey, palette, RGBA, CMYK … → RGB (a palette with transparency goes through RGBA, as PIL advises)."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def decode_image(path: str | Path, side: int, draft: bool = True) -> np.ndarray:
    """An image file as a ``(3, side, side)`` uint8 array: its centred square, resized (antialiased bilinear).

    The same pixels as torchvision's ``Resize(side)`` then ``CenterCrop(side)``, in one resize of the square.

    Decision: only the centred square is stored, so that every image is an array of one fixed shape, memory-mapped
    and batched on the device with no per-image sizes or padding. The cost: training's random-resized crops draw
    their boxes inside that square, not over the whole image as the papers' ``RandomResizedCrop`` does, so the
    parts outside it are never seen (a 4:3 photo loses 1/8 of its width on each side). See docs/data.md.

    Args:
        path: an image file PIL can read.
        side: the side of the result.
        draft: let the JPEG decoder scale down by 2, 4 or 8 while decoding (``Image.draft``), as far as the
            result keeps at least ``side`` pixels a side; far cheaper for large photographs.

    Raises:
        OSError, ValueError, Image.DecompressionBombError …: what PIL raises on an unreadable file.
    """
    with Image.open(path) as image:
        if draft:
            image.draft("RGB", (side, side))
        image = to_rgb(image)
        w, h = image.size
        s = min(w, h)
        box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
        square = image.resize((side, side), Image.Resampling.BILINEAR, box=box)
    return np.asarray(square).transpose(2, 0, 1)


@dataclass(frozen=True)
class Target:
    """Where decoded images go: a raw ``(rows, 3, side, side)`` uint8 file, opened as a ``numpy.memmap``."""

    path: str
    rows: int
    side: int

    def open(self) -> np.memmap:
        return np.memmap(self.path, np.uint8, "r+", shape=(self.rows, 3, self.side, self.side))


def decode_chunk(target: Target, rows: Sequence[int], paths: Sequence[str]) -> list[tuple[int, str]]:
    """Decode ``paths`` into ``rows`` of ``target``; the rows that failed, with the reason (a decoding task)."""
    out = target.open()
    failed = []
    for row, path in zip(rows, paths, strict=True):
        try:
            out[row] = decode_image(path, target.side)
        except Exception as exc:  # PIL raises many types on a damaged file; any of them skips this image
            failed.append((row, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    # no flush: a shared mapping's pages are in the page cache, seen by every process at once; msync here
    # would force a write to disk per chunk. The cache fsyncs each file once, before the entry is published
    del out
    return failed


def can_spawn() -> bool:
    """Whether ``spawn`` can start processes here: it re-runs the main module from its file, which fails when
    that is no file (``python - < script``); decoding then stays in this process."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or path is None or os.path.isfile(path)


def default_workers() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_all(target: Target, paths: Sequence[str], *, workers: int | None = None, label: str = "decoding",
               quiet: bool = False, stop_on_error: bool = False) -> list[tuple[int, str]]:
    """Decode ``paths[i]`` into row ``i`` of ``target`` on all cores, with a progress bar and ETA on stderr.

    Args:
        target: the output file (already of the right size).
        paths: one image file per row.
        workers: decoding processes (default: every core this process may use; 1 decodes here, as does a
            process whose main module ``spawn`` cannot re-run: see :func:`can_spawn`).
        label: the progress bar's title.
        quiet: no progress bar (there is none either when stderr is not a terminal).
        stop_on_error: return at the first unreadable file (the rest left undecoded).

    Returns:
        (row, reason) of every file that could not be decoded, sorted by row.
    """
    from tqdm import tqdm

    chunks = [range(i, min(i + CHUNK, len(paths))) for i in range(0, len(paths), CHUNK)]
    workers = max(1, min(workers or default_workers(), len(chunks))) if can_spawn() else 1
    failed: list[tuple[int, str]] = []
    with tqdm(total=len(paths), desc=label, unit="img", file=sys.stderr, disable=quiet or not sys.stderr.isatty(),
              smoothing=0.1) as bar:
        def done(rows: range, errors: list[tuple[int, str]]) -> bool:
            bar.update(len(rows))
            failed.extend(errors)
            return bool(errors) and stop_on_error

        if workers == 1:
            for rows in chunks:
                if done(rows, decode_chunk(target, rows, [paths[i] for i in rows])):
                    break
        else:
            _decode_in_pool(target, paths, chunks, workers, done)
    return sorted(failed)


def _decode_in_pool(target: Target, paths: Sequence[str], chunks: list[range], workers: int,
                    done: Callable[[range, list[tuple[int, str]]], bool]) -> None:
    """Chunks decoded by a pool of fresh processes, at most two per process queued (a stop cancels the rest).

    ``spawn``: the caller may be a Ray worker or hold torch's threads, where ``fork`` can deadlock.
    """
    context = multiprocessing.get_context("spawn")
    pending = iter(chunks)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        running: dict[Future, range] = {}

        def submit(n: int) -> None:
            for rows in [r for _, r in zip(range(n), pending, strict=False)]:
                running[pool.submit(decode_chunk, target, rows, [paths[i] for i in rows])] = rows

        submit(2 * workers)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                if done(running.pop(future), future.result()):
                    for f in running:
                        f.cancel()
                    return
            submit(len(finished))


def chunked_rows(total: int, row_bytes: int, chunk_bytes: int = 1 << 28) -> list[range]:
    """``range(total)`` in consecutive pieces of at most ``chunk_bytes`` (at least one row each)."""
    step = max(1, chunk_bytes // max(1, row_bytes))
    return [range(i, min(i + step, total)) for i in range(0, total, step)]


def stride_for(total: int, sample: int) -> int:
    """The stride that picks about ``sample`` of ``total`` items."""
    return max(1, math.ceil(total / max(1, sample)))
