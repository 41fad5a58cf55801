"""Parameters and multiply-adds of an arch, without training (``docs/complexity.md``).

Importing this module does not import torch (the functions do), so that ``nas_attn`` exposes
:func:`complexity` without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas_attn.arch import Arch

if TYPE_CHECKING:
    from torch import nn


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm affine included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of convolutions, linear layers and matrix products for one input.

    This is ``FlopCounterMode``'s total / 2 (it counts a multiply-add as two flops); element-wise ops,
    pooling and softmax are not counted — the convention of ULSAM, LADNet, LGAM and CSM.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def complexity(arch: Arch) -> dict[str, int]:
    """``{"params": int, "flops": int}`` of ``arch`` at its ``input_size`` and ``num_classes``.

    The model is built on the ``meta`` device, so no memory is allocated and nothing is computed.

    Raises:
        ArchError: the arch is invalid (found before torch is imported, except for a ``timm:``,
            ``torchvision:`` or ``py:`` backbone, whose positions come from its model).
    """
    arch.validate()
    import torch

    from nas_attn.build import build_model

    with torch.device("meta"):
        model = build_model(arch)
    return {
        "params": count_params(model),
        "flops": count_flops(model, (1, arch.in_chans, arch.input_size, arch.input_size)),
    }
