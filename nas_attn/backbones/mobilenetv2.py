"""MobileNetV2 numbered as in ULSAM Table 5: layer k is torchvision's ``mobilenet_v2().features[k-1]``."""

from __future__ import annotations

from timm.layers import make_divisible
from torch import nn
from torchvision.models import mobilenet_v2

from nas_attn.backbones.base import Backbone, LayerSpec, NumberedNet, replace_stem_conv

# (expansion t, channels c, repeats n, first stride s): torchvision's inverted residual setting.
_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(Backbone):
    """Layers 1 (stem conv) … 18 (inverted residuals), 19 (1×1 conv), 20 (pool + classifier).

    ``small_input`` (SPEC decision): layers 1 and 3 get stride 1.
    """

    name = "mobilenetv2"
    has_width = True
    head_index = 20

    def stem_stride(self, small_input: bool) -> int:
        return 1

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        cin = make_divisible(32 * width, 8)
        specs = [LayerSpec(1, "conv3x3", in_chans, cin, 1 if small_input else 2, block=False)]
        for t, c, n, s in _SETTING:
            cout = make_divisible(c * width, 8)
            for i in range(n):
                index = len(specs) + 1
                stride = s if i == 0 else 1
                if small_input and index == 3:
                    stride = 1
                kind = "inverted_residual" if t != 1 else "inverted_residual_t1"
                specs.append(LayerSpec(index, kind, cin, cout, stride, residual=stride == 1 and cin == cout))
                cin = cout
        specs.append(LayerSpec(19, "conv1x1", cin, make_divisible(1280 * max(1.0, width), 8), 1, block=False))
        return specs

    def build(self, num_classes: int, in_chans: int, width: float, small_input: bool) -> NumberedNet:
        net = mobilenet_v2(num_classes=num_classes, width_mult=width)
        features = list(net.features)
        if in_chans != 3 or small_input:
            features[0][0] = replace_stem_conv(features[0][0], in_chans, 1 if small_input else 2)
        if small_input:
            features[2].conv[1][0].stride = (1, 1)  # layer 3's depthwise conv
            features[2].stride = 1
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.classifier)
        return NumberedNet(nn.Identity(), features, head)

    def attach_inside(self, layer: nn.Module, module: nn.Module) -> None:
        layer.conv.append(module)  # torchvision's InvertedResidual adds the skip after ``conv``
