"""BAM — Bottleneck Attention Module (Park et al., BMVC 2018).

timm has no BAM, hence this file (timm's SE/CBAM/ECA/GC are used as they are, see ``timm_modules``).
"""

from __future__ import annotations

import torch
from torch import nn


class BAM(nn.Module):
    """``M = σ(BN(MLP(GAP(F))) ⊕ spatial(F))``, output ``F ⊕ F ⊗ M``.

    Spatial branch: 1×1 to m/r → two 3×3 convs with dilation 4 → 1×1 to one map (BN + ReLU between), then a
    BN, as Park et al.'s eq. 4 writes it: M_s(F) = BN(f₃¹ˣ¹(f₂³ˣ³(f₁³ˣ³(f₀¹ˣ¹(F))))).
    """

    def __init__(self, channels: int, reduction: int = 16, dilation: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.channel = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.BatchNorm1d(channels)
        )

        def conv_bn_relu(cin: int, cout: int, k: int, d: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=d * (k // 2), dilation=d, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.spatial = nn.Sequential(
            *conv_bn_relu(channels, hidden, 1, 1),
            *conv_bn_relu(hidden, hidden, 3, dilation),
            *conv_bn_relu(hidden, hidden, 3, dilation),
            nn.Conv2d(hidden, 1, 1),
            nn.BatchNorm2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.sigmoid(self.channel(x.mean((2, 3)))[..., None, None] + self.spatial(x))
        return x + x * mask


def bam(channels: int, reduction: int = 16, dilation: int = 4) -> nn.Module:
    """Registered as ``bam``."""
    return BAM(channels, reduction, dilation)
