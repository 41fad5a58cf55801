"""MobileNetV2 numbered as in ULSAM Table 5: layer k is torchvision's ``mobilenet_v2().features[k-1]``."""

from __future__ import annotations

from nas_attn.backbones.base import Backbone, LayerSpec, make_divisible

# (expansion t, channels c, repeats n, first stride s): torchvision's inverted residual setting.
_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(Backbone):
    """Layers 1 (stem conv) … 18 (inverted residuals), 19 (1×1 conv), 20 (pool + classifier).

    ``small_input`` (decision, ``docs/numbering.md``): layers 1 and 3 get stride 1.
    """

    name = "mobilenetv2"
    has_width = True
    head_index = 20
    net_module = "nas_attn.backbones.nets.mobilenet"
    reference = "torchvision mobilenet_v2: 3,504,872 params (1000 classes)"

    def stem_stride(self, small_input: bool) -> int:
        return 1

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        cin = make_divisible(32 * width)
        specs = [LayerSpec(1, "conv3x3", in_chans, cin, 1 if small_input else 2, block=False)]
        for t, c, n, s in _SETTING:
            cout = make_divisible(c * width)
            for i in range(n):
                index = len(specs) + 1
                stride = s if i == 0 else 1
                if small_input and index == 3:
                    stride = 1
                kind = "inverted_residual" if t != 1 else "inverted_residual_t1"
                specs.append(LayerSpec(index, kind, cin, cout, stride, residual=stride == 1 and cin == cout))
                cin = cout
        specs.append(LayerSpec(19, "conv1x1", cin, make_divisible(1280 * max(1.0, width)), 1, block=False))
        return specs
