"""Trial checkpoints: what a trial saves, where Ray Tune put it, and reading it back.

A trial's last report carries a checkpoint folder with ``model.pt`` (the state dict, on the CPU), its digest
``model.pt.sha256`` and ``arch.json``. Ray Tune persists it under the experiment's storage and hands the persisted
:class:`ray.tune.Checkpoint` to callbacks (``Callback.on_checkpoint``); its location is recorded on the
Optuna trial as ``checkpoint``: a path relative to the run folder when it lies inside it (so the folder can
move), an absolute path, or a URI (``s3://…``) with ``--storage-path``.

Reading one back checks the folder before torch is imported (:func:`check_folder`): the digest (random bytes,
a truncated or empty file, flipped bytes, another trial's weights copied in), else, for checkpoints written
before the digest was, that the file is the zip archive ``torch.save`` writes; and that ``arch.json`` names
the arch the run recorded for the trial. A damaged checkpoint is then told in well under a second rather than
after torch and timm have been imported (3–4 s) to build a model the weights would not fit.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from nas_attn.errors import NasAttnError
from nas_attn.fsutil import file_digest

if TYPE_CHECKING:
    import torch

    from nas_attn.arch import Arch

WEIGHTS = "model.pt"
ARCH = "arch.json"
DIGEST = "model.pt.sha256"


def checkpoint_uri(checkpoint, run_dir: Path, scheme: str | None) -> str:
    """How the run records a persisted ``ray.tune.Checkpoint`` (see the module docstring)."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        path = Path(checkpoint.path)
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)
    return f"{scheme or checkpoint.filesystem.type_name}://{checkpoint.path}"


def save_checkpoint(folder: Path, state_dict: dict[str, torch.Tensor], arch_json: str) -> None:
    """Write what a trial's final checkpoint holds into ``folder``."""
    save_state(folder, {k: v.detach().cpu() for k, v in state_dict.items()}, arch_json)


def save_state(folder: Path, state: dict, arch_json: str) -> None:
    """Write ``state`` (tensors and the plain values torch's weights-only loader reads: a supernet's training
    state) as a checkpoint of ``arch_json`` into ``folder``, with its digest."""
    import torch

    torch.save(state, folder / WEIGHTS)
    (folder / DIGEST).write_text(file_digest(folder / WEIGHTS) + "\n")
    (folder / ARCH).write_text(arch_json)


class DamagedCheckpoint(Exception):
    """The weights file is there but is not the checkpoint written (random bytes, truncated, empty, altered)."""


class OtherArchCheckpoint(Exception):
    """The checkpoint folder holds another arch's checkpoint (its ``arch.json`` names another network)."""


def check_folder(folder: Path, arch: Arch | None = None) -> None:
    """Torch-free checks of a local checkpoint folder (module docstring); ``arch``: the trial's.

    Raises:
        FileNotFoundError: no weights file there.
        DamagedCheckpoint: the weights differ from their digest, or (no digest) are not a zip archive.
        OtherArchCheckpoint: ``arch.json`` names another network than ``arch``.
    """
    weights, digest = folder / WEIGHTS, folder / DIGEST
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS} in {folder}")
    if digest.is_file():
        if file_digest(weights) != digest.read_text().strip():
            raise DamagedCheckpoint(f"{WEIGHTS} is not the file written: its sha256 differs from {DIGEST}")
    elif not zipfile.is_zipfile(weights):  # torch.save has written zip archives since torch 1.6
        raise DamagedCheckpoint(f"{WEIGHTS} is not the zip archive torch.save writes")
    if arch is not None and (folder / ARCH).is_file():
        _check_arch(folder / ARCH, arch)


def _check_arch(path: Path, expected: Arch) -> None:
    from nas_attn.arch import Arch

    try:  # from_dict: text that is not an object must not be taken for a file name (as from_json would)
        saved = Arch.from_dict(json.loads(path.read_text()))
    except Exception as exc:  # noqa: BLE001 - any unreadable arch.json is one line
        raise DamagedCheckpoint(f"{ARCH} cannot be read ({type(exc).__name__})") from None
    if saved.network_key() != expected.network_key():
        raise OtherArchCheckpoint(f"{ARCH} names {saved.short()}, not the trial's {expected.short()}")


def _local_folder(uri: str, run_dir: Path) -> Path:
    """The folder of a checkpoint recorded as a path (relative ones are inside ``run_dir``)."""
    return Path(uri) if Path(uri).is_absolute() else Path(run_dir) / uri


def load_weights(uri: str, run_dir: Path, arch: Arch | None = None) -> dict[str, torch.Tensor]:
    """The state dict of the checkpoint recorded as ``uri`` (relative paths are inside ``run_dir``), checked
    first by :func:`check_folder` against ``arch`` when given.

    Raises:
        FileNotFoundError: nothing readable there (e.g. a worker's local disk seen from the head node).
        DamagedCheckpoint: the file is there and damaged.
        OtherArchCheckpoint: the folder holds another arch's checkpoint.
        Exception: whatever fetching a URI from its storage raised (pyarrow's file systems).
    """
    if "://" not in uri:
        path = _local_folder(uri, run_dir)
        check_folder(path, arch)
        return _unpickle(path / WEIGHTS)
    from ray.tune import Checkpoint

    with tempfile.TemporaryDirectory() as local:
        Checkpoint(uri).to_directory(local)
        check_folder(Path(local), arch)
        return _unpickle(Path(local) / WEIGHTS)


def _unpickle(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch's weights-only unpickler fails on damaged bytes in many ways (KeyError …)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamagedCheckpoint(first[:200]) from None


@contextmanager
def _told_as(uri: str, what: str) -> Iterator[None]:
    """Each way a checkpoint cannot be read, as one :class:`NasAttnError` line naming ``what`` and ``uri``."""
    try:
        yield
    except DamagedCheckpoint as exc:
        raise NasAttnError(f"{what}: its checkpoint {uri} is damaged ({exc})") from None
    except OtherArchCheckpoint as exc:
        raise NasAttnError(f"{what}: its checkpoint {uri} is another arch's ({exc})") from None
    except Exception as exc:  # a missing file, or what a storage's file system raises on fetching the URI
        raise NasAttnError(f"{what}: its checkpoint {uri} cannot be read ({type(exc).__name__}: {exc})") from None


def check_checkpoint(uri: str, run_dir: Path, what: str, arch: Arch | None = None) -> None:
    """:func:`check_folder` on a local checkpoint, its failures one :class:`NasAttnError` line (torch-free: a
    command checks the trials it was given before it imports anything heavy); a URI is checked when fetched."""
    if "://" not in uri:
        with _told_as(uri, what):
            check_folder(_local_folder(uri, run_dir), arch)


def read_state(uri: str, run_dir: Path, what: str, arch: Arch | None = None) -> dict[str, torch.Tensor]:
    """The state dict of the checkpoint ``uri``; a missing, damaged (random bytes, truncated, empty, altered) or
    other arch's checkpoint is one :class:`NasAttnError` line naming ``what`` and it. Read before a model is
    built, so that the damage is told before timm is imported."""
    with _told_as(uri, what):
        state = load_weights(uri, run_dir, arch)
    if not isinstance(state, dict):
        raise NasAttnError(f"{what}: its checkpoint {uri} holds no state dict ({type(state).__name__})")
    return state


def put_state(model: torch.nn.Module, state: dict[str, torch.Tensor], uri: str, what: str) -> None:
    """``model`` given ``state``; weights of another arch are one :class:`NasAttnError` line."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise NasAttnError(f"{what}: its checkpoint {uri} holds weights of another arch ({detail[:200]})") from None
