"""SGE — Spatial Group-wise Enhance (Li, Hu, Yang, "Spatial Group-wise Enhance: Improving Semantic Feature
Learning in Convolutional Networks", 2019). Neither timm nor torchvision has it."""

from __future__ import annotations

import torch
from torch import nn


class SpatialGroupEnhance(nn.Module):
    """For each of G groups x (m/G channels × h·w positions): the group's global descriptor g = GAP(x);
    c_i = g · x_i at every position i; ĉ = (c − μ_c) / (σ_c + ε) over the positions; a = γ ĉ + β with one γ,
    β per group; output x_i ⊗ σ(a_i).

    Parameters: 2G (γ, β), initialised to 0 and 1 as the authors do, so the module starts as a constant gate
    σ(1). σ_c is the biased standard deviation over the positions (the paper's), so a 1×1 map gives ĉ = 0
    and a finite output; ε = 1e-5.
    """

    def __init__(self, channels: int, groups: int = 64, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.zeros(groups))
        self.bias = nn.Parameter(torch.ones(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, h, w = x.shape
        xg = x.view(b, self.groups, m // self.groups, h * w)
        c = (xg * xg.mean(-1, keepdim=True)).sum(2)  # (b, G, hw)
        c = (c - c.mean(-1, keepdim=True)) / (c.std(-1, correction=0, keepdim=True) + self.eps)
        a = c * self.weight[:, None] + self.bias[:, None]
        return (xg * torch.sigmoid(a).unsqueeze(2)).view(b, m, h, w)


def sge(channels: int, groups: int = 64) -> nn.Module:
    """Registered as ``sge`` (64 groups by default, the paper's choice for ResNets)."""
    return SpatialGroupEnhance(channels, groups)
