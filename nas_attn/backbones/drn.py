"""Dilated residual networks DRN-C-26 and DRN-D-22 (Yu, Koltun, Funkhouser, CVPR 2017).

Numbered in forward order over the authors' eight levels (``drn.py`` in github.com/fyu/drn): DRN-C-26 has
12 basic blocks (levels 1–6 residual, the two degridding blocks of levels 7–8 without a skip); DRN-D-22 has
the 3×3 conv layers of levels 1–2, the 8 residual blocks of levels 3–6 and the conv layers of levels 7–8.
DRN-A-50 is a ResNet-50 layout (``nas_attn.backbones.resnet.DRN_A_50``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nas_attn.backbones.base import Backbone, LayerSpec
from nas_attn.backbones.resnet import scaled

#: channels and dilation of the authors' levels 1–8 (levels 1–4 stride 1, 2, 2, 2; 5–8 stride 1)
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
DILATIONS = (1, 1, 1, 1, 2, 4, 2, 1)
STRIDES = (1, 2, 2, 2, 1, 1, 1, 1)
#: layers per level of DRN-C-26 and DRN-D-22
DEPTHS = (1, 1, 2, 2, 2, 2, 1, 1)


@dataclass(frozen=True)
class DrnLayer:
    """One numbered layer: its level (1–8), channels, stride, dilation and what it is."""

    level: int
    in_channels: int
    out_channels: int
    stride: int
    dilation: int
    kind: str  # "basic" (residual block), "basic_noskip" (DRN-C levels 7–8) or "conv3x3" (DRN-D levels 1, 2, 7, 8)


class DilatedResNet(Backbone):
    """A 7×7 stride-1 stem conv to 16 channels with BN-ReLU, the numbered layers (output stride 8), global
    average pool and a classifier (the authors' 1×1 conv classifier has the same parameters as a linear one).

    The stem never downsamples, so ``small_input`` changes nothing. ``width`` multiplies every level's
    channels (rounded), as for the ResNets.
    """

    net_module = "nas_attn.backbones.nets.drn"
    has_width = True

    def __init__(self, name: str, arch: str, reference: str) -> None:
        self.name, self.arch, self.reference = name, arch, reference

    def stem_stride(self, small_input: bool) -> int:
        return 1

    def layers(self, width: float = 1.0) -> list[DrnLayer]:
        """The numbered layers in forward order."""
        out, cin = [], scaled(CHANNELS[0], width)
        for level, (n, c, s, d) in enumerate(zip(DEPTHS, CHANNELS, STRIDES, DILATIONS, strict=True), 1):
            c = scaled(c, width)
            for i in range(n):
                out.append(DrnLayer(level, cin, c, s if i == 0 else 1, d, self._kind(level)))
                cin = c
        return out

    def _kind(self, level: int) -> str:
        if 3 <= level <= 6:
            return "basic"
        if self.arch == "C":
            return "basic" if level <= 2 else "basic_noskip"
        return "conv3x3"

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        return [LayerSpec(i, x.kind, x.in_channels, x.out_channels, x.stride, residual=x.kind == "basic",
                          block=x.kind != "conv3x3")
                for i, x in enumerate(self.layers(width), 1)]


DRN_C_26 = DilatedResNet("drn_c_26", "C", "fyu/drn drn.py drn_c_26: 21,126,584 params (1000 classes; README 21.1M)")
DRN_D_22 = DilatedResNet("drn_d_22", "D", "fyu/drn drn.py drn_d_22: 16,393,752 params (1000 classes; README 16.4M)")
