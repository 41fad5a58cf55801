"""LGAM — lightweight group-wise attention module (LGAM, Zhang, Li, Yang, J. Computer Applications 2020)."""

from __future__ import annotations

import torch
from torch import nn


class GroupChannelAttention(nn.Module):
    """F_chan(x) = σ(ReLU(BN(MLP(GAP(x))))) ⊗ x ⊕ x for one group, MLP = FC(C′→C′/r) → ReLU → FC(C′/r→C′).

    The ReLU before the sigmoid is LGAM eq. 2's δ, and the BN is the text's (after the MLP), as the paper
    writes them: the mask lies in [0.5, 1), so M ⊗ x ⊕ x scales each channel by a factor in [1.5, 2).
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.BatchNorm1d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.sigmoid(self.mlp(x.mean((2, 3))))[..., None, None]
        return m * x + x


class LGAM(nn.Module):
    """Group-wise channel attention chained as a ladder, then a parameter-free spatial attention.

    ``y_1 = F_chan(x_1)``, ``y_k = F_chan(x_k ⊕ y_{k−1})``; ``A′ = concat(y)`` (``docs/modules.md``);
    ``M_spat = σ(ReLU(Σ_c A′))``; output ``A′ ⊗ M_spat ⊕ A``. Each group has its own MLP.
    The ladder is sequential by definition (y_k needs y_{k−1}), hence the loop over groups.
    """

    def __init__(self, channels: int, groups: int = 4, reduction: int = 8) -> None:
        super().__init__()
        self.groups = groups
        self.branches = nn.ModuleList(GroupChannelAttention(channels // groups, reduction) for _ in range(groups))

    def channel_ladder(self, x: torch.Tensor) -> torch.Tensor:
        """A′ = concat(y_1 … y_G), before the spatial attention."""
        ys: list[torch.Tensor] = []
        for xk, branch in zip(x.chunk(self.groups, dim=1), self.branches, strict=True):
            ys.append(branch(xk if not ys else xk + ys[-1]))
        return torch.cat(ys, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.channel_ladder(x)
        m_spat = torch.sigmoid(torch.relu(a.sum(1, keepdim=True)))
        return a * m_spat + x


def lgam(channels: int, groups: int = 4, reduction: int = 8) -> nn.Module:
    """Registered as ``lgam``."""
    return LGAM(channels, groups, reduction)
