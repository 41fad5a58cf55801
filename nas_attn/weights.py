"""Where a built model's weights come from, so that weights can move between models of different archs.

Every parameter and buffer of a model made by :func:`~nas_attn.build.build_model` (or by
:func:`~nas_attn.supernet.build_supernet`) has an *origin*: ``backbone:<path>``, its path in the backbone
as the family built it, before any module was placed; or ``<placement>:<path>``, its path inside an
attention module, where ``<placement>`` names the position, op, module and groups (:func:`placement_origin`).
Placing a module wraps or moves the layer it goes to (``layers.3`` becomes ``layers.3.layer`` after an
``insert``, ``layers.3.block`` beside a ``parallel`` module), so state-dict keys differ between archs while
origins do not. This is what weight inheritance (a kept layer keeps the vanilla backbone's weights) and the
one-shot supernet (a path's weights are those of a standalone model) rest on.

Written here: timm's and torchvision's checkpoint helpers remap keys by name patterns, which cannot follow
a layer into the wrapper that a placement puts around it.

Importing this module is torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas_attn.arch import Placement

if TYPE_CHECKING:
    import torch
    from torch import nn

#: the origin prefix of the backbone's own weights
BACKBONE = "backbone"

#: what :func:`module_roots` returns: ``id(module) -> (module, origin prefix)``; the module is held so that its
#: id is not reused by a module created later in the same build
Roots = dict[int, tuple["nn.Module", str]]


def placement_origin(placement: Placement) -> str:
    """The origin prefix of the module ``placement`` builds: ``p14.substitute.ulsam.g4:`` (args appended as
    canonical JSON): the same in every arch, and in a supernet, that places that module there."""
    groups = "" if placement.groups is None else f".g{placement.groups}"
    args = "" if not placement.args else "." + json.dumps(placement.args, sort_keys=True, separators=(",", ":"))
    return f"p{placement.position}.{placement.op}.{placement.module}{groups}{args}:"


def module_roots(net: nn.Module) -> Roots:
    """Every module of a freshly built backbone, as the root of its own origin (``backbone:<path>``)."""
    return {id(m): (m, f"{BACKBONE}:{path}") for path, m in net.named_modules()}


def state_origins(net: nn.Module, roots: Roots) -> dict[str, str]:
    """``state-dict key -> origin`` of ``net``: a module's origin is its own root's, or its parent's origin
    followed by its name (wrappers and slots added by placements have no root and no weights of their own)."""
    prefixes: dict[str, str] = {}
    for path, module in net.named_modules(remove_duplicate=False):
        parent, _, name = path.rpartition(".")
        prefixes[path] = roots[id(module)][1] if id(module) in roots else _join(prefixes.get(parent, ""), name)
    out = {}
    for key in net.state_dict():
        owner, _, leaf = key.rpartition(".")
        # a key that names no module (a module's own state-dict hook) is its own origin: it moves nowhere
        out[key] = _join(prefixes[owner], leaf) if owner in prefixes else f"?:{key}"
    return out


def _join(prefix: str, name: str) -> str:
    return f"{prefix}{name}" if prefix.endswith(":") or not prefix else f"{prefix}.{name}"


@dataclass(frozen=True)
class Inherited:
    """What :func:`inherit_weights` did: tensors copied from the vanilla backbone, and those left as built (the
    placed modules' own, initialised as each module defines)."""

    kept: int
    new: int


def inherit_weights(model: nn.Module, vanilla_state: dict[str, torch.Tensor]) -> Inherited:
    """Copy into ``model`` (built by ``build_model``) the weights of every backbone layer it keeps from the
    state dict of the vanilla backbone (the same arch without placements). A substituted layer is no longer in
    ``model``, so its weights are not copied; placed modules keep their initialisation.

    Raises:
        ValueError: ``vanilla_state`` is not the same backbone (a kept tensor is missing or has another shape).
    """
    import torch

    origins: dict[str, str] = model.weight_origins
    state = model.state_dict()
    kept = 0
    with torch.no_grad():
        for key, origin in origins.items():
            if not origin.startswith(f"{BACKBONE}:"):
                continue
            source = vanilla_state.get(origin.removeprefix(f"{BACKBONE}:"))
            if source is None or source.shape != state[key].shape:
                raise ValueError(f"the vanilla weights do not fit this arch's backbone at {key} "
                                 f"({origin.removeprefix(BACKBONE + ':')}: "
                                 f"{'missing' if source is None else tuple(source.shape)})")
            state[key].copy_(source)
            kept += 1
    return Inherited(kept, len(origins) - kept)
