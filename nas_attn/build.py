"""``build_model``: the PyTorch model of an :class:`~nas_attn.arch.Arch`.

Importing this module is torch-free (``nas_attn.build_model`` is this function): torch is imported when a
model is built, after the arch has been validated, so a bad arch is refused at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_attn.arch import Arch, order_for_build
from nas_attn.backbones import BuildSettings, get_backbone
from nas_attn.errors import ArchError, ModuleConfigError
from nas_attn.modules import create
from nas_attn.weights import module_roots, placement_origin, state_origins

if TYPE_CHECKING:
    from torch import nn


def build_settings(arch: Arch) -> BuildSettings:
    """What the arch's family builds its backbone from."""
    return BuildSettings(arch.num_classes, arch.in_chans, float(arch.width), arch.small_input,
                         arch.resolved_variant(), arch.input_size, tuple(sorted(arch.backbone_args.items())))


def build_model(arch: Arch) -> nn.Module:
    """Build the PyTorch model of ``arch`` (freshly initialised).

    ``substitute``, ``inside`` and ``parallel`` placements are applied first, then ``insert``, so that ``k``
    and ``k:1`` may be combined at one layer (the module inserted after the changed one).

    Raises:
        ArchError: the arch is invalid, or a module refuses an option value; the message names the placement.
    """
    positions = {p.index: p for p in arch.validate()}

    family = get_backbone(arch.backbone)
    settings = build_settings(arch)
    net = family.build(settings)
    roots = module_roots(net)
    placed = []
    for i, pl in order_for_build(arch):
        try:
            module = create(pl.module, positions[pl.position].out_channels, pl.groups, **pl.args)
        except ModuleConfigError as exc:
            raise ArchError(f"placement {i} ({pl.short()}): {exc}") from None
        roots[id(module)] = (module, placement_origin(pl))
        placed.append((pl, module))
        family.place(net, settings, pl.position, pl.op, module)
    # each placement and the module it built, where it sits in the model (for heatmaps at its output); a plain
    # tuple, so not registered as submodules: state dicts and traced or exported models are unchanged
    net.placed = tuple(placed)
    net.features_path = family.features_path(net, settings)
    # state-dict key -> where the tensor comes from (nas_attn/weights.py): what inheritance and the supernet map by
    net.weight_origins = state_origins(net, roots)
    return net
