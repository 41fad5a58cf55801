"""DenseNets from timm's ``DenseLayer`` and ``DenseTransition``, one numbered position per layer."""

from __future__ import annotations

import torch
from timm.layers import BatchNormAct2d, ClassifierHead
from timm.models.densenet import DenseLayer, DenseTransition
from torch import nn

from nas_attn.backbones.base import BuildSettings
from nas_attn.backbones.densenet import DenseNet
from nas_attn.backbones.nets.common import NumberedNet, init_convs, stem_conv


class DenseConcat(nn.Module):
    """``cat(x, layer(x))``: a dense layer whose output is its input with the new features appended."""

    def __init__(self, layer: DenseLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layer(x)], 1)


def build(family: DenseNet, s: BuildSettings) -> NumberedNet:
    """Stem, the numbered dense layers and transitions, then BN-ReLU, average pool and classifier."""
    specs = family.layer_specs()
    layers: list[nn.Module] = [
        DenseConcat(DenseLayer(p.in_channels, family.growth, bn_size=4)) if p.kind == "dense_layer"
        else DenseTransition(p.in_channels, p.out_channels)
        for p in specs
    ]
    head = nn.Sequential(BatchNormAct2d(specs[-1].out_channels), ClassifierHead(specs[-1].out_channels, s.num_classes))
    return init_convs(NumberedNet(_stem(family, s), layers, head))


def _stem(family: DenseNet, s: BuildSettings) -> nn.Module:
    c = family.stem_channels
    if family.cifar:
        return stem_conv(s.in_chans, c, 3, 1)
    if s.small_input:
        return nn.Sequential(stem_conv(s.in_chans, c, 3, 1), BatchNormAct2d(c))
    return nn.Sequential(stem_conv(s.in_chans, c, 7, 2), BatchNormAct2d(c), nn.MaxPool2d(3, 2, 1))
