"""CSM — channel + spatial (position) attention module (CSM, Yang, Zhang, Yang, section II)."""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.modules.registry import register_module

#: CSM's spatial part is quadratic in h·w; placements above this many positions are refused.
CSM_MAX_POSITIONS = 1024


class CSM(nn.Module):
    """``F₁ = σ(W₂ ReLU(W₁ GAP(F))) ⊗ F``, then DANet-style position attention on F₁.

    B, C = 1×1 convs to m/8 channels, D = 1×1 conv to m channels, ``S = softmax_positions(Bᵀ C)`` (hw × hw),
    ``F_out = γ · (D Sᵀ) ⊕ F₁`` with γ a learned scalar initialised to 0 (SPEC decision, as in DANet), so
    the module starts as pure channel attention. The two matrix products count as multiply-adds.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        qk = max(1, channels // 8)
        self.channel = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, channels, bias=False)
        )
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, h, w = x.shape
        if h * w > CSM_MAX_POSITIONS:
            raise ValueError(f"csm: {h}x{w} = {h * w} positions exceed {CSM_MAX_POSITIONS}")
        f1 = torch.sigmoid(self.channel(x.mean((2, 3))))[..., None, None] * x
        q = self.query(f1).flatten(2)  # B: (b, m/8, hw)
        k = self.key(f1).flatten(2)  # C: (b, m/8, hw)
        s = torch.bmm(q.transpose(1, 2), k).softmax(-1)  # (b, hw, hw)
        out = torch.bmm(self.value(f1).flatten(2), s.transpose(1, 2))  # D Sᵀ: (b, m, hw)
        return self.gamma * out.view(b, m, h, w) + f1


@register_module("csm", source="CSM section II", max_positions=CSM_MAX_POSITIONS)
def csm(channels: int, reduction: int = 16) -> nn.Module:
    return CSM(channels, reduction)
