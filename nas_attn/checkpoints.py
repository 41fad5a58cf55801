"""Trial checkpoints: what a trial saves, where Ray Tune put it, and reading it back.

A trial's last report carries a checkpoint folder with ``model.pt`` (the state dict, on the CPU) and
``arch.json``. Ray Tune persists it under the experiment's storage and hands the persisted
:class:`ray.tune.Checkpoint` to callbacks (``Callback.on_checkpoint``); its location is recorded on the
Optuna trial as ``checkpoint``: a path relative to the run folder when it lies inside it (so the folder can
move), an absolute path, or a URI (``s3://…``) with ``--storage-path``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from nas_attn.errors import NasAttnError

if TYPE_CHECKING:
    import torch

WEIGHTS = "model.pt"
ARCH = "arch.json"


def checkpoint_uri(checkpoint, run_dir: Path, scheme: str | None) -> str:
    """How the run records a persisted ``ray.tune.Checkpoint`` (see the module docstring)."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        path = Path(checkpoint.path)
        return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)
    return f"{scheme or checkpoint.filesystem.type_name}://{checkpoint.path}"


def save_checkpoint(folder: Path, state_dict: dict[str, torch.Tensor], arch_json: str) -> None:
    """Write what a trial's final checkpoint holds into ``folder``."""
    import torch

    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, folder / WEIGHTS)
    (folder / ARCH).write_text(arch_json)


class DamagedCheckpoint(Exception):
    """The weights file is there but is not a checkpoint torch can read (random bytes, truncated, empty)."""


def load_weights(uri: str, run_dir: Path) -> dict[str, torch.Tensor]:
    """The state dict of the checkpoint recorded as ``uri`` (relative paths are inside ``run_dir``).

    Raises:
        FileNotFoundError: nothing readable there (e.g. a worker's local disk seen from the head node).
        DamagedCheckpoint: the file is there and damaged.
        Exception: whatever fetching a URI from its storage raised (pyarrow's file systems).
    """
    if "://" not in uri:
        path = Path(uri) if Path(uri).is_absolute() else Path(run_dir) / uri
        return _unpickle(path / WEIGHTS)
    from ray.tune import Checkpoint

    with tempfile.TemporaryDirectory() as local:
        Checkpoint(uri).to_directory(local)
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


def load_into(model: torch.nn.Module, uri: str, run_dir: Path, what: str) -> None:
    """``model`` given the weights of the checkpoint ``uri``; a missing, damaged (random bytes, truncated,
    empty) or mismatched (another arch's) checkpoint is one :class:`NasAttnError` line naming ``what`` and it.
    """
    try:
        state = load_weights(uri, run_dir)
    except DamagedCheckpoint as exc:
        raise NasAttnError(f"{what}: its checkpoint {uri} is damaged ({exc})") from None
    except Exception as exc:  # a missing file, or what a storage's file system raises on fetching the URI
        raise NasAttnError(f"{what}: its checkpoint {uri} cannot be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise NasAttnError(f"{what}: its checkpoint {uri} holds no state dict ({type(state).__name__})")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise NasAttnError(f"{what}: its checkpoint {uri} holds weights of another arch ({detail[:200]})") from None
