"""The one-shot supernet of a search space: every choice at every position in one model, one path at a time.

:func:`build_supernet` builds the space's backbone once and puts a :class:`Slot` at every (position, op) the
space allows, holding one module for each (module, groups) there. Setting a path (:func:`set_path`, an arch
of the space) makes each slot run the module the arch places there, or what the layer does without it:
nothing for ``insert`` and ``inside``, no added term for ``parallel``, the layer itself for ``substitute``.
The model then computes exactly what ``build_model(arch)`` computes with the same weights:
:func:`path_state_dict` gives that model's state dict, mapped by weight origin (:mod:`nas_attn.weights`).

Single-path training (Guo et al., "Single Path One-Shot NAS with Uniform Sampling", ECCV 2020): each step
trains one path drawn by :func:`sample_path`, uniformly over each position's choices (what the space's joint
encoding lists: ``none`` and every module/groups/op), so every candidate module is trained about equally
often.

Written here: timm and torchvision have no supernets; NNI's and Once-for-All's are built around their own
model definitions, not around any CNN's numbered positions.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas_attn.arch import Arch
from nas_attn.backbones import BuildSettings, get_backbone
from nas_attn.build import build_model, build_settings
from nas_attn.errors import ArchError
from nas_attn.modules import create
from nas_attn.weights import module_roots, placement_origin, state_origins

if TYPE_CHECKING:
    from nas_attn.space import SearchSpace

#: the order slots are placed in at one position: ``substitute`` last among the structural ops, so that it
#: replaces the layer together with the ``inside``/``parallel`` slots already attached to it (the reverse
#: would hide the residual branch behind a slot); ``insert`` after all, as ``build_model`` applies it
SLOT_ORDER = ("inside", "parallel", "substitute", "insert")


def candidate_key(module: str, groups: int | None) -> str:
    """The name of a candidate in its slot (``ulsam_g4``): a module name cannot hold a dot."""
    return module if groups is None else f"{module}_g{groups}"


class Slot(nn.Module):
    """The choices of one (position, op): a module for each candidate, and what ``none`` does there.

    ``active`` is the candidate the current path runs (``None``: no module at this position by this op). A
    parallel slot with none active adds a zero (``x + 0``: the same values, at the cost of one addition).
    ``original`` is the substituted layer (op ``substitute`` only), run when no candidate is active.
    """

    def __init__(self, op: str, candidates: dict[str, nn.Module]) -> None:
        super().__init__()
        self.op = op
        self.candidates = nn.ModuleDict(candidates)
        self.original: nn.Module | None = None
        self.active: str | None = None

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.active is not None:
            return self.candidates[self.active](x)
        if self.op == "substitute":
            return self.original(x, *args, **kwargs)
        if self.op == "parallel":  # the wrapper adds this to the block's sum: nothing added, x + 0 == x exactly
            return x.new_zeros(())
        return x


def build_supernet(space: SearchSpace) -> nn.Module:
    """The supernet of ``space`` (freshly initialised), with no module active (the vanilla backbone's path).

    Its ``slots`` attribute maps ``(position, op)`` to its :class:`Slot`; ``weight_origins`` maps each state
    key to its origin.

    Raises:
        ArchError: a ``substitute`` slot would replace several modules of a library backbone's unit (a
            supernet cannot give them back when no module is chosen; not supported yet).
    """
    base = space.base
    family = get_backbone(base.backbone)
    settings = build_settings(base)
    channels = {p.index: p.out_channels for p in base.validate()}
    net = family.build(settings)
    roots = module_roots(net)
    slots: dict[tuple[int, str], Slot] = {}
    for pc in space.positions:
        for op in sorted(pc.ops, key=SLOT_ORDER.index):
            candidates = {}
            for p in (p for p in pc.choices() if p is not None and p.op == op):
                key = candidate_key(p.module, p.groups)
                if key in candidates:  # a registered module named like another's groups ("se_g2")
                    raise ArchError(f"oneshot: two candidates at position {pc.index} are both named {key!r}")
                candidates[key] = module = create(p.module, channels[pc.index], p.groups)
                roots[id(module)] = (module, placement_origin(p))
            if candidates:
                slots[pc.index, op] = _place_slot(net, family, settings, pc.index, op, Slot(op, candidates))
    net.slots = slots
    net.base = base
    net.weight_origins = state_origins(net, roots)
    return net


def _place_slot(net: nn.Module, family, settings: BuildSettings, position: int, op: str, slot: Slot) -> Slot:
    """Place ``slot`` as the family places a module; a ``substitute`` slot keeps the layer it replaced."""
    before = dict(net.named_modules())
    family.place(net, settings, position, op, slot)
    if op == "substitute":
        reachable = {id(m) for m in net.modules()}
        gone = [p for p, m in before.items() if id(m) not in reachable]
        tops = [p for p in gone if p.rpartition(".")[0] not in gone]
        if len(tops) != 1:
            raise ArchError(f"oneshot: substitute at position {position} replaces {len(tops)} modules "
                            f"({', '.join(tops)}); a supernet holds one replaced layer per slot (not supported yet)")
        slot.original = before[tops[0]]
    return slot


def set_path(net: nn.Module, arch: Arch) -> None:
    """Make ``net`` (a supernet) compute ``arch``, an arch of its space.

    Raises:
        ArchError: ``arch`` is not an arch of the supernet's space: another backbone or settings, a module the
            supernet does not hold, or module options (a supernet holds each module with its defaults).
    """
    if replace(arch, placements=[]) != net.base:
        raise ArchError("the arch's backbone or settings are not the supernet's: not an arch of its space")
    with_args = next((p for p in arch.placements if p.args), None)
    if with_args is not None:
        raise ArchError(f"{with_args.short()}: module options ({', '.join(with_args.args)}) are not in a supernet, "
                        "which holds each module with its defaults")
    chosen = {(p.position, p.op): candidate_key(p.module, p.groups) for p in arch.placements}
    missing = [k for k in chosen if k not in net.slots or chosen[k] not in net.slots[k].candidates]
    if missing:
        raise ArchError(f"the supernet holds no {chosen[missing[0]]} at position {missing[0][0]} by "
                        f"{missing[0][1]}: not an arch of its space")
    for key, slot in net.slots.items():
        slot.active = chosen.get(key)


def clear_path(net: nn.Module) -> None:
    """Make ``net`` (a supernet) compute its backbone alone (no module anywhere)."""
    for slot in net.slots.values():
        slot.active = None


def sample_path(space: SearchSpace, rng: random.Random) -> Arch:
    """An arch of ``space`` drawn uniformly at each position over its choices (``none`` included where the
    space allows it)."""
    placements = [rng.choice(pc.choices()) for pc in space.positions]
    return space.arch([p for p in placements if p is not None])


def path_state_dict(net: nn.Module, arch: Arch) -> dict[str, torch.Tensor]:
    """The state dict that ``build_model(arch)`` loads (strictly) to compute what ``net`` computes on the path
    of ``arch``: the supernet's tensors themselves, under that model's keys."""
    with torch.device("meta"):
        origins = build_model(arch).weight_origins
    by_origin = {origin: key for key, origin in net.weight_origins.items()}
    state = net.state_dict()
    return {key: state[by_origin[origin]] for key, origin in origins.items()}
