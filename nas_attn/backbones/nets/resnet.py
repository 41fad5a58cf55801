"""ResNet-like models from timm's ``ResNet`` (its ``channels``, ``cardinality``, ``base_width``
and ``output_stride`` cover every layout in ``nas_attn.backbones.resnet``)."""

from __future__ import annotations

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from nas_attn.backbones.base import BuildSettings
from nas_attn.backbones.nets.common import NumberedNet, stem_conv
from nas_attn.backbones.resnet import ResNetFamily, scaled


def build(family: ResNetFamily, s: BuildSettings) -> NumberedNet:
    """The numbered model: timm's stem, its blocks as positions, global average pool and classifier."""
    lay = family.layout
    net = ResNet(
        Bottleneck if lay.bottleneck else BasicBlock, lay.depths, num_classes=s.num_classes, in_chans=s.in_chans,
        output_stride=32 // 2 ** lay.dilated_stages, cardinality=lay.cardinality, base_width=lay.base_width,
        channels=tuple(scaled(c, s.width) for c in lay.channels),
        zero_init_last=False,  # torchvision's initialisation: the last BN of each branch starts at 1
    )
    conv1, maxpool = net.conv1, net.maxpool
    if s.small_input or lay.cifar_stem:
        conv1, maxpool = stem_conv(s.in_chans, conv1.out_channels, 3, 1), nn.Identity()
    stages = [getattr(net, f"layer{i + 1}") for i in range(len(lay.depths))]
    blocks = [b for stage in stages for b in stage]
    if s.variant == "v1":
        _stride_first_conv(blocks)
    if lay.dilated_stages:
        _undilate_first_blocks(stages[-lay.dilated_stages:])
    stem = nn.Sequential(conv1, net.bn1, net.act1, maxpool)
    return NumberedNet(stem, blocks, nn.Sequential(net.global_pool, net.fc))


def _stride_first_conv(blocks: list[nn.Module]) -> None:
    """ResNet v1 (He et al. 2016): a downsampling bottleneck strides its first 1×1 conv, not its 3×3."""
    for b in blocks:
        if b.conv2.stride != (1, 1):
            b.conv1.stride, b.conv2.stride = b.conv2.stride, (1, 1)


def _undilate_first_blocks(stages: list[nn.Sequential]) -> None:
    """The authors' DRN-A keeps dilation 1 in the first block of each dilated stage; timm gives the first
    block of the last stage the previous stage's dilation (2). Same parameters, other receptive field."""
    for stage in stages:
        conv = stage[0].conv2
        conv.dilation, conv.padding = (1, 1), (1, 1)
