"""MobileNetV1 numbered as in ULSAM Table 3: layer 1 is the stem conv, layers 2–14 depthwise-separable."""

from __future__ import annotations

from nas_attn.backbones.base import Backbone, LayerSpec, make_divisible

# (out channels, stride) of layers 2 … 14
DWS_SETTING = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(Backbone):
    """Layers 1 … 14, then global average pool and a linear classifier. ``small_input``: layer 1 stride 1."""

    name = "mobilenetv1"
    has_width = True
    net_module = "nas_attn.backbones.nets.mobilenet"
    reference = "Howard et al. 2017: 4.2M params, 569M multiply-adds (1000 classes)"

    def stem_stride(self, small_input: bool) -> int:
        return 1

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        cin = make_divisible(32 * width)
        specs = [LayerSpec(1, "conv3x3", in_chans, cin, 1 if small_input else 2, block=False)]
        for c, s in DWS_SETTING:
            cout = make_divisible(c * width)
            specs.append(LayerSpec(len(specs) + 1, "dws", cin, cout, s))
            cin = cout
        return specs
