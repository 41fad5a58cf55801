"""SE, CBAM, ECA and GC from timm (``timm.layers.create_attn``) with timm's defaults, under our names."""

from __future__ import annotations

from timm.layers import create_attn
from torch import nn


def se(channels: int, rd_ratio: float = 1 / 16) -> nn.Module:
    """Squeeze-and-excitation (Hu et al.): timm's ``SEModule``."""
    return create_attn("se", channels, rd_ratio=rd_ratio)


def cbam(channels: int, rd_ratio: float = 1 / 16, spatial_kernel_size: int = 7) -> nn.Module:
    """CBAM (Woo et al.): timm's ``CbamModule``."""
    return create_attn("cbam", channels, rd_ratio=rd_ratio, spatial_kernel_size=spatial_kernel_size)


def eca(channels: int, gamma: int = 2, beta: int = 1) -> nn.Module:
    """ECA (Wang et al.): timm's ``EcaModule``, kernel size adapted to the channels."""
    return create_attn("eca", channels, gamma=gamma, beta=beta)


def gc(channels: int, rd_ratio: float = 1 / 8) -> nn.Module:
    """Global context block (Cao et al.): timm's ``GlobalContext``."""
    return create_attn("gc", channels, rd_ratio=rd_ratio)
