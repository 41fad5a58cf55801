"""MobileNetV2 (torchvision's layers) and MobileNetV1 (assembled from timm's ``ConvNormAct``)."""

from __future__ import annotations

from timm.layers import ConvNormAct
from torch import nn
from torchvision.models import mobilenet_v2

from nas_attn.backbones.base import Backbone, BuildSettings
from nas_attn.backbones.nets.common import NumberedNet, stem_conv


def build(family: Backbone, settings: BuildSettings) -> NumberedNet:
    """The model of ``mobilenetv2`` or ``mobilenetv1`` (dispatched on the family's name)."""
    if family.name == "mobilenetv2":
        return _mobilenet_v2(settings)
    return _mobilenet_v1(family, settings)


def _mobilenet_v2(s: BuildSettings) -> NumberedNet:
    net = mobilenet_v2(num_classes=s.num_classes, width_mult=s.width)
    features = list(net.features)
    if s.in_chans != 3 or s.small_input:
        features[0][0] = stem_conv(s.in_chans, features[0][0].out_channels, 3, 1 if s.small_input else 2)
    if s.small_input:
        features[2].conv[1][0].stride = (1, 1)  # layer 3's depthwise conv
        features[2].stride = 1
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.classifier)
    return NumberedNet(nn.Identity(), features, head)


class DepthwiseSeparable(nn.Sequential):
    """Depthwise 3×3 + pointwise 1×1, each followed by BN + ReLU (timm's ConvNormAct)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(ConvNormAct(cin, cin, 3, stride=stride, groups=cin), ConvNormAct(cin, cout, 1))


def _mobilenet_v1(family: Backbone, s: BuildSettings) -> NumberedNet:
    # torchvision has no MobileNetV1, and timm's comes out of its EfficientNet builder with another layer
    # structure, so the numbered layers are assembled here from timm's ConvNormAct.
    specs = family.layer_specs(s.width, s.small_input, s.in_chans)
    layers: list[nn.Module] = [ConvNormAct(s.in_chans, specs[0].out_channels, 3, stride=specs[0].stride)]
    layers += [DepthwiseSeparable(p.in_channels, p.out_channels, p.stride) for p in specs[1:]]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(specs[-1].out_channels, s.num_classes))
    return NumberedNet(nn.Identity(), layers, head)
