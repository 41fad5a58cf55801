"""A registered attention module that fails while training (imported by test spaces via ``imports:``)."""

import torch
from torch import nn

from nas_attn.modules import register_module


class Explode(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("explode: this module always fails in training")
        return x


@register_module("explode", source="tests")
def explode(channels: int) -> nn.Module:
    return Explode()
