"""ULSAM — Ultra-Lightweight Subspace Attention Module (ULSAM, Saini, Jha et al., WACV 2020, eq. 2–4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ULSAM(nn.Module):
    """Subspace attention: one spatial attention map per group of G = m/g channels.

    For each group n: ``A_n = softmax_hw(PW(maxpool3x3(DW1x1(F_n))))`` and ``F̂_n = A_n ⊗ F_n ⊕ F_n``.
    All groups are computed at once: the depthwise 1×1 conv is one ``groups=m`` conv and the per-group
    pointwise conv (G channels → 1 map) is one ``groups=g`` conv. No biases (a softmax over positions
    cancels a constant), so params = 2m and multiply-adds = 2·m·h·w for every g (``docs/modules.md``).
    """

    def __init__(self, channels: int, groups: int = 4) -> None:
        super().__init__()
        self.channels, self.groups = channels, groups
        self.dw = nn.Conv2d(channels, channels, 1, groups=channels, bias=False)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pw = nn.Conv2d(channels, groups, 1, groups=groups, bias=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The g attention maps, shape (B, g, h, w), each summing to 1 over its h·w positions."""
        b, _, h, w = x.shape
        logits = self.pw(self.pool(self.dw(x)))
        return logits.flatten(2).float().softmax(-1).view(b, self.groups, h, w).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, m, h, w = x.shape
        a = self.attention(x).unsqueeze(2)  # (B, g, 1, h, w), broadcast over each group's G channels
        xg = x.view(b, self.groups, m // self.groups, h, w)
        return (xg * a + xg).view(b, m, h, w)


class ULSAMOfficial(ULSAM):
    """ULSAM as in the authors' public code: BN + ReLU after the DW and the PW conv, convs with bias.

    Kept as a separate variant for comparison with :class:`ULSAM` (the paper's equations).
    """

    def __init__(self, channels: int, groups: int = 4) -> None:
        super().__init__(channels, groups)
        self.dw = nn.Sequential(
            nn.Conv2d(channels, channels, 1, groups=channels, bias=True),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.pw = nn.Sequential(
            nn.Conv2d(channels, groups, 1, groups=groups, bias=True),
            nn.BatchNorm2d(groups),
            nn.ReLU(inplace=True),
        )


def ulsam(channels: int, groups: int = 4) -> nn.Module:
    """Registered as ``ulsam``."""
    return ULSAM(channels, groups)


def ulsam_official(channels: int, groups: int = 4) -> nn.Module:
    """Registered as ``ulsam_official``."""
    return ULSAMOfficial(channels, groups)


def ulsam_loop_reference(module: ULSAM, x: torch.Tensor) -> torch.Tensor:
    """A straightforward loop over groups computing the same equations (used by tests and the benchmark)."""
    g, G = module.groups, module.channels // module.groups
    out = []
    for n in range(g):
        xn = x[:, n * G : (n + 1) * G]
        d = F.conv2d(xn, module.dw.weight[n * G : (n + 1) * G], groups=G)
        p = F.max_pool2d(d, 3, 1, 1)
        s = F.conv2d(p, module.pw.weight[n : n + 1])
        a = s.flatten(1).softmax(-1).view_as(s)
        out.append(a * xn + xn)
    return torch.cat(out, 1)
