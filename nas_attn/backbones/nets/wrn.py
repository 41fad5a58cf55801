"""CIFAR Wide ResNets from timm's pre-activation basic block (``timm.models.resnetv2.PreActBasic``)."""

from __future__ import annotations

from timm.layers import BatchNormAct2d, ClassifierHead
from timm.models.resnetv2 import DownsampleConv, PreActBasic
from torch import nn

from nas_attn.backbones.base import BuildSettings
from nas_attn.backbones.nets.common import NumberedNet, init_convs, stem_conv
from nas_attn.backbones.wrn import WideResNet


def _conv(cin: int, cout: int, kernel_size: int, stride: int = 1, dilation: int = 1, groups: int = 1,
          **kwargs) -> nn.Conv2d:
    """A plain bias-free conv that keeps the side (timm's default in this block is weight-standardised)."""
    return nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2 * dilation, dilation, groups, bias=False,
                     **kwargs)


def build(family: WideResNet, s: BuildSettings) -> NumberedNet:
    """Stem conv, the numbered pre-activation blocks, then BN-ReLU, average pool and classifier."""
    blocks = [
        PreActBasic(p.in_channels, p.out_channels, stride=p.stride, conv_layer=_conv,
                    norm_layer=BatchNormAct2d, proj_layer=DownsampleConv)
        for p in family.layer_specs(s.width)
    ]
    width = blocks[-1].conv2.out_channels
    head = nn.Sequential(BatchNormAct2d(width), ClassifierHead(width, s.num_classes))
    return init_convs(NumberedNet(stem_conv(s.in_chans, 16, 3, 1), blocks, head))
