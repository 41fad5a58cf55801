"""CSM — channel + spatial (position) attention (CSM, Yang, Zhang, Yang, section II), and its two parts.

``cam`` is the channel part alone, ``sam`` the spatial part alone, ``csm`` both in either order (CSM Fig. 6 /
Table 1); ``csm_spatial_first`` is ``csm`` with ``order="spatial-first"``, registered under its own name so
that a search space can choose the order like a module.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_attn.errors import ModuleConfigError
from nas_attn.modules.registry import CHOICE_OPTIONS

ORDERS = CHOICE_OPTIONS["order"]


class ChannelAttention(nn.Module):
    """CAM: ``F ⊗ σ(W₂ ReLU(W₁ GAP(F)))`` with bias-free W₁: m → m/r, W₂: m/r → m (params 2m²/r)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, channels, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3))))[..., None, None] * x


class PositionAttention(nn.Module):
    """SAM: B, C = 1×1 convs to m/k channels, D = 1×1 conv to m channels, ``S = softmax_positions(Bᵀ C)``
    (hw × hw), output ``γ · (D Sᵀ) ⊕ F`` with a learned scalar γ initialised to 0.

    ``key_reduction`` k: the CSM paper writes B, C, D ∈ R^{C×H×W}, so the default is k = 1; DANet's position
    attention, which this follows for γ (a decision: CSM does not say how the result is merged), uses k = 8.
    The two matrix products are counted as multiply-adds: (h·w)²·(m/k + m).
    """

    def __init__(self, channels: int, key_reduction: int = 1) -> None:
        super().__init__()
        if not isinstance(key_reduction, int) or isinstance(key_reduction, bool) or key_reduction < 1:
            raise ModuleConfigError(f"key_reduction must be a positive integer, got {key_reduction!r}")
        qk = max(1, channels // key_reduction)
        self.query = nn.Conv2d(channels, qk, 1)
        self.key = nn.Conv2d(channels, qk, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, h, w = x.shape
        q = self.query(x).flatten(2)  # B: (b, m/k, hw)
        k = self.key(x).flatten(2)  # C: (b, m/k, hw)
        s = torch.bmm(q.transpose(1, 2), k).softmax(-1)  # (b, hw, hw)
        out = torch.bmm(self.value(x).flatten(2), s.transpose(1, 2))  # D Sᵀ: (b, m, hw)
        return self.gamma * out.view(b, m, h, w) + x


class CSM(nn.Module):
    """CAM then SAM (``order="channel-first"``, the CSM paper's module) or SAM then CAM (``"spatial-first"``).

    With γ = 0 at initialisation the module starts as pure channel attention in either order.
    """

    def __init__(self, channels: int, reduction: int = 16, key_reduction: int = 1,
                 order: str = "channel-first") -> None:
        super().__init__()
        if order not in ORDERS:
            raise ModuleConfigError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        self.order = order
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = PositionAttention(channels, key_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "channel-first":
            return self.spatial(self.channel(x))
        return self.channel(self.spatial(x))


def cam(channels: int, reduction: int = 16) -> nn.Module:
    """Registered as ``cam``."""
    return ChannelAttention(channels, reduction)


def sam(channels: int, key_reduction: int = 1) -> nn.Module:
    """Registered as ``sam``."""
    return PositionAttention(channels, key_reduction)


def csm(channels: int, reduction: int = 16, key_reduction: int = 1, order: str = "channel-first") -> nn.Module:
    """Registered as ``csm``."""
    return CSM(channels, reduction, key_reduction, order)


def csm_spatial_first(channels: int, reduction: int = 16, key_reduction: int = 1) -> nn.Module:
    """Registered as ``csm_spatial_first``."""
    return CSM(channels, reduction, key_reduction, "spatial-first")
