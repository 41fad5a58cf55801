"""Backbone families with numbered positions (SPEC section 2)."""

from __future__ import annotations

from nas_attn.backbones.base import OPS, Backbone, LayerSpec, NumberedNet, Position
from nas_attn.backbones.mobilenetv1 import MobileNetV1
from nas_attn.backbones.mobilenetv2 import MobileNetV2
from nas_attn.backbones.resnet import RESNET18, RESNET34, RESNET50
from nas_attn.errors import ArchError

_BACKBONES: dict[str, Backbone] = {
    b.name: b for b in (MobileNetV2(), MobileNetV1(), RESNET18, RESNET34, RESNET50)
}


def list_backbones() -> list[str]:
    """Names of the backbone families."""
    return list(_BACKBONES)


def get_backbone(name: str) -> Backbone:
    """The backbone family ``name``; raises :class:`ArchError` for an unknown name."""
    try:
        return _BACKBONES[name]
    except (KeyError, TypeError):
        raise ArchError(f"unknown backbone {name!r} (known: {', '.join(_BACKBONES)})") from None


__all__ = ["OPS", "Backbone", "LayerSpec", "NumberedNet", "Position", "get_backbone", "list_backbones"]
