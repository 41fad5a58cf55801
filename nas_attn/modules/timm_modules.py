"""SE, CBAM, ECA and GC from timm (``timm.layers.create_attn``), registered under our names."""

from __future__ import annotations

from timm.layers import create_attn
from torch import nn

from nas_attn.modules.registry import register_module


def _timm(kind: str):
    def make(channels: int, **kwargs) -> nn.Module:
        return create_attn(kind, channels, **kwargs)

    make.__name__ = kind
    make.__doc__ = f"timm's ``create_attn({kind!r}, channels, **kwargs)``."
    return make


for _name in ("se", "cbam", "eca", "gc"):
    register_module(_name, source="timm")(_timm(_name))
