"""DRN-C / DRN-D from timm's dilated ``BasicBlock`` and ``ConvNormAct``.

Neither timm nor torchvision has these networks; their pieces (a dilated basic block, conv-BN-ReLU) are
timm's, only the level layout of the authors' ``drn.py`` is assembled here.
"""

from __future__ import annotations

from timm.layers import ClassifierHead, ConvNormAct
from timm.models.resnet import BasicBlock, downsample_conv
from torch import nn

from nas_attn.backbones.base import BuildSettings
from nas_attn.backbones.drn import DilatedResNet, DrnLayer
from nas_attn.backbones.nets.common import NumberedNet, init_convs


def build(family: DilatedResNet, s: BuildSettings) -> NumberedNet:
    """The 7×7/1 stem with BN-ReLU, the numbered layers, then average pool and classifier."""
    layers = family.layers(s.width)
    stem = ConvNormAct(s.in_chans, layers[0].in_channels, 7)
    head = ClassifierHead(layers[-1].out_channels, s.num_classes)
    return init_convs(NumberedNet(stem, [_layer(x) for x in layers], head))


def _layer(x: DrnLayer) -> nn.Module:
    if x.kind == "conv3x3":
        return ConvNormAct(x.in_channels, x.out_channels, 3, stride=x.stride, dilation=x.dilation)
    if x.kind == "basic_noskip":  # conv-BN-ReLU twice: the authors' BasicBlock with residual=False
        return nn.Sequential(ConvNormAct(x.in_channels, x.out_channels, 3, dilation=x.dilation),
                             ConvNormAct(x.out_channels, x.out_channels, 3, dilation=x.dilation))
    downsample = None
    if x.stride != 1 or x.in_channels != x.out_channels:
        downsample = downsample_conv(x.in_channels, x.out_channels, 1, stride=x.stride)
    return BasicBlock(x.in_channels, x.out_channels, x.stride, downsample, dilation=x.dilation,
                      first_dilation=x.dilation)
