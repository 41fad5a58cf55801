"""nas-attn: neural architecture search over attention placement in compact CNNs.

Importing the package is cheap and torch-free: :class:`Arch`, :class:`Placement`, the errors, and
:func:`build_model` / :func:`complexity`, which import torch the first time they are called.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _metadata_version

# Plain imports, not PEP 562: every name here is torch-free until called, and an eager import keeps the
# function ``complexity`` from being shadowed by the submodule ``nas_attn.complexity`` once that is imported.
from nas_attn.arch import Arch, Placement
from nas_attn.build import build_model
from nas_attn.complexity import complexity
from nas_attn.errors import ArchError, DataError, ModuleConfigError, NasAttnError, SpaceError
from nas_attn.lean import leave_out_triton_if_asked as _leave_out_triton_if_asked
from nas_attn.space import SearchSpace, load_space

# before anything imports torch (the names above do not): a Ray worker of a search on a machine without a GPU
# is told so by its environment (nas_attn/lean.py says why)
_leave_out_triton_if_asked()

# the version is written once, in pyproject.toml; the installed package's metadata carries it
try:
    __version__ = _metadata_version("nas-attn")
except _NotInstalled:  # a source tree on sys.path, never installed: importing still works
    __version__ = "0+unknown"


def run_search(space, **flags):
    """Run a search of ``space``; see :func:`nas_attn.search.run_search` (imports Ray and torch when called)."""
    from nas_attn.search import run_search as _run_search

    return _run_search(space, **flags)


def load_trial(run_dir, trial: int):
    """Trial ``trial`` of a run folder as a model with its trained weights, without Ray; see
    :func:`nas_attn.trained.load_trial` (imports torch when called)."""
    from nas_attn.trained import load_trial as _load_trial

    return _load_trial(run_dir, trial)


__all__ = [
    "Arch", "ArchError", "DataError", "ModuleConfigError", "NasAttnError", "Placement", "SearchSpace", "SpaceError",
    "build_model", "complexity", "load_space", "load_trial", "run_search",
]
