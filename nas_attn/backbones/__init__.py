"""Backbone families with numbered positions (``docs/numbering.md``). Torch-free: models are built by
``nas_attn.backbones.nets``, imported on first :meth:`Backbone.build`."""

from __future__ import annotations

from nas_attn.backbones.base import OPS, Backbone, BuildSettings, LayerSpec, Position
from nas_attn.backbones.densenet import DENSENET121, DENSENET_BC100
from nas_attn.backbones.drn import DRN_C_26, DRN_D_22
from nas_attn.backbones.library import PREFIXES, LibraryBackbone, is_library_name
from nas_attn.backbones.mobilenetv1 import MobileNetV1
from nas_attn.backbones.mobilenetv2 import MobileNetV2
from nas_attn.backbones.resnet import RESNET_FAMILIES
from nas_attn.backbones.wrn import WRN16_8, WRN16_10, WRN28_10
from nas_attn.errors import ArchError

_BACKBONES: dict[str, Backbone] = {
    b.name: b for b in (MobileNetV2(), MobileNetV1(), *RESNET_FAMILIES, WRN16_8, WRN16_10, WRN28_10,
                        DENSENET121, DENSENET_BC100, DRN_C_26, DRN_D_22)
}


def list_backbones() -> list[str]:
    """Names of the hand-written backbone families (any ``timm:``, ``torchvision:`` or ``py:`` name is a
    backbone too: :mod:`nas_attn.backbones.library`)."""
    return list(_BACKBONES)


def get_backbone(name: str) -> Backbone:
    """The backbone ``name``: a hand-written family, or a library or user model named ``timm:<model>``,
    ``torchvision:<model>`` or ``py:<package.module>:<factory>``; raises :class:`ArchError` for an unknown
    family or a malformed library name (an unknown library model is found when its positions are asked)."""
    if is_library_name(name):
        return LibraryBackbone(name)
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        raise ArchError(f"unknown backbone {name!r} (known: {', '.join(_BACKBONES)}, or timm:<model>, "
                        f"torchvision:<model>, py:<package.module>:<factory>)") from None


__all__ = ["OPS", "PREFIXES", "Backbone", "BuildSettings", "LayerSpec", "LibraryBackbone", "Position", "get_backbone",
           "list_backbones"]
