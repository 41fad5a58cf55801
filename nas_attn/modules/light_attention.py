"""Light-Attention (LA) module (LADNet, Yang, Jiang et al., IEEE Access 9, 2021, section III.B)."""

from __future__ import annotations

import torch
from torch import nn


def global_stochastic_pool(x: torch.Tensor, draws: int, training: bool) -> list[torch.Tensor]:
    """Global stochastic pooling over each channel's whole h×w map; returns ``draws`` tensors (B, m).

    With P = relu(x) and p = P / ΣP: in training each draw picks one position per (sample, channel) with
    probability p and returns P there (the gradient reaches the drawn element only); in evaluation every
    draw is the expectation Σ p·P. An all-zero map gives 0.
    """
    P = x.flatten(2).float().relu()  # (B, m, hw)
    if not training:
        # Σ p·P = ΣP² / ΣP; the clamp only matters for an all-zero map, where the numerator is 0 too.
        expectation = P.square().sum(-1) / P.sum(-1).clamp_min(torch.finfo(P.dtype).tiny)
        return [expectation] * draws
    # Inverse-CDF sampling on the cumulative sums: vectorised over (B, m), no torch.multinomial, which
    # rejects all-zero rows. Positions with P = 0 are never drawn unless the whole map is zero.
    cdf = P.detach().cumsum(-1)
    total = cdf[..., -1:]
    out = []
    for _ in range(draws):
        u = torch.rand_like(total) * total
        idx = torch.searchsorted(cdf, u, right=True).clamp_max(P.shape[-1] - 1)
        out.append(P.gather(-1, idx).squeeze(-1))
    return out


def _safe_denominator(d: torch.Tensor, eps: float) -> torch.Tensor:
    """sign(d)·max(|d|, eps), with sign(0) = +1 (a decision, ``docs/modules.md``)."""
    sign = torch.where(d < 0, -1.0, 1.0).to(d.dtype)
    return sign * d.abs().clamp_min(eps)


class LightAttention(nn.Module):
    """Light-Attention: GSP channel descriptors, a residual, then Max and Mean modules.

    Decisions (``docs/modules.md``): two GSP descriptors share one MLP m → m/r → m whose outputs pass a
    sigmoid (the LA text says the MLP outputs pass an activation without naming it; the sigmoid, as in SE,
    keeps the residual bounded) giving c₁, c₂; ``F′ = F ⊕ c₁ ⊕ c₂``; ``A_max = (F′/mv)^k`` and
    ``A_mean = F′/|F′ − mv|`` with safe denominators (ε = 1e-3); ``M = σ(norm(A_max) + norm(A_mean))`` where
    norm divides by the map's mean absolute value; output ``F′ ⊗ M``. Everything after the MLP is computed in
    float32 so that it stays finite for any finite input; none of it is a matrix product or a convolution, so
    autocast leaves it in float32 (and counting on the ``meta`` device needs no autocast context).
    """

    def __init__(self, channels: int, reduction: int = 16, power: int = 2, eps: float = 1e-3) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                 nn.Sigmoid())
        self.power, self.eps = power, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, d2 = global_stochastic_pool(x, 2, self.training)
        c = self.mlp(torch.stack([d1, d2]).to(x.dtype)).float()  # (2, B, m), one shared MLP
        f = x.float() + (c[0] + c[1])[..., None, None]
        mv = f.mean((2, 3), keepdim=True)
        a_max = (f / _safe_denominator(mv, self.eps)).pow(self.power)
        a_mean = f / _safe_denominator((f - mv).abs(), self.eps)
        mask = torch.sigmoid(self._normalise(a_max) + self._normalise(a_mean))
        return (f * mask).to(x.dtype)

    def _normalise(self, a: torch.Tensor) -> torch.Tensor:
        return a / a.abs().mean((2, 3), keepdim=True).clamp_min(self.eps)


def light_attention(channels: int, reduction: int = 16, power: int = 2) -> nn.Module:
    """Registered as ``la``."""
    return LightAttention(channels, reduction=reduction, power=power)
