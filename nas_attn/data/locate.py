"""Locating a dataset's source files (a folder given, ``$NAS_ATTN_DATA``, the system's, the user cache, a
torchvision download, the bundled sample) and :func:`load_dataset`, which opens or builds its cache entry."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from nas_attn.data.records import Dataset, DataSource, open_found
from nas_attn.data.sources import BUNDLED, DATASETS, cifar_files, find, fmnist_files
from nas_attn.dirs import user_cache
from nas_attn.errors import DataError

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")
_NATIVE_SIDE = {"fashion_mnist": 28, "cifar10": 32, "cifar100": 32, "imagefolder": 224}


#: torchvision's download, run in a child process: a search's driver does not import torchvision (nor torch) for
#: it (issue 23), and an offline machine fails fast (5 s a connection, no retries)
_FMNIST_DOWNLOAD = """
import socket, sys
from torchvision.datasets import FashionMNIST
socket.setdefaulttimeout(5)
for train in (True, False):
    FashionMNIST(sys.argv[1], train=train, download=True)
"""


def _fmnist_download(cache: Path) -> bool:
    """torchvision's download into the user cache; ``False`` when offline or when it fails otherwise."""
    try:
        done = subprocess.run([sys.executable, "-c", _FMNIST_DOWNLOAD, str(cache)], capture_output=True, check=False,
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _locate_fmnist(data_root: Path | None, download: bool) -> str:
    """Fashion-MNIST's folder, first found wins: ``data_root``; ``$NAS_ATTN_DATA``; the system's; the user
    cache; a torchvision download; else :data:`BUNDLED`."""
    if data_root is not None:
        if fmnist_files(data_root) is None:
            raise DataError(f"--data-root {data_root}: no Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] …)")
        return str(data_root)
    env = os.environ.get("NAS_ATTN_DATA")
    if env:
        if fmnist_files(Path(env)) is None:
            raise DataError(f"$NAS_ATTN_DATA={env}: no Fashion-MNIST IDX files there")
        return env
    cache = user_cache()
    for root in (SYSTEM_FMNIST, cache):
        if fmnist_files(root) is not None:
            return str(root)
    if download and _fmnist_download(cache) and fmnist_files(cache) is not None:
        return str(cache)
    return BUNDLED


def _locate_cifar(name: str, data_root: Path | None, download: bool) -> str:
    root = data_root or user_cache()
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
    return open_found(source, find(source, workers))


def stored_side(input_size: int, augment: str, crop_fraction: float = 0.875) -> int:
    """The side images are stored at for training at ``input_size``: the input size itself for ``pad_crop``;
    ``input_size / crop_fraction`` for ``random_resized_crop`` (256 for 224), room for crops and a centre crop."""
    return input_size if augment == "pad_crop" else int(round(input_size / crop_fraction))
