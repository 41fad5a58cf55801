"""Non-local block, embedded Gaussian (Wang, Girshick, Gupta, He, CVPR 2018): timm's ``NonLocalAttn``."""

from __future__ import annotations

from timm.layers import NonLocalAttn
from torch import nn


def nonlocal_block(channels: int) -> nn.Module:
    """Registered as ``nonlocal``: θ, φ, g = 1×1 convs to m/2 channels, f = softmax(θᵀφ) over positions,
    z = BN(W_z (f g)) ⊕ x with W_z: m/2 → m and the BN initialised to zero, so the block starts as the
    identity (Wang et al. section 3.3).

    Wang et al. halve the channels and do not scale θᵀφ, hence ``rd_ratio=1/2``, ``rd_divisor=1`` and
    ``use_scale=False`` instead of timm's 1/8 and √m scaling. Params 2m² + 4.5m; its cost grows with (h·w)²
    (the registry caps it at 1024 positions).
    """
    return NonLocalAttn(channels, use_scale=False, rd_ratio=1 / 2, rd_divisor=1)
