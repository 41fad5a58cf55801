"""CIFAR Wide ResNets WRN-d-k (Zagoruyko & Komodakis, BMVC 2016): position k is the k-th block."""

from __future__ import annotations

from nas_attn.backbones.base import Backbone, LayerSpec
from nas_attn.backbones.resnet import scaled


class WideResNet(Backbone):
    """3×3 stem conv to 16 channels, three stages of (d − 4) / 6 pre-activation basic blocks of widths 16k, 32k,
    64k (strides 1, 2, 2; a 1×1 conv shortcut on the pre-activated input where the shape changes), then
    BN-ReLU, global average pool and a classifier.

    A CIFAR network: its stem never downsamples, so ``small_input`` changes nothing. ``width`` scales the
    widening factor k (the blocks' 16k, 32k, 64k channels, rounded to the nearest integer; the 16-channel stem
    stays, as k leaves it): ``wrn16_10`` at width 0.2 is WRN-16-2, which a CPU can train.
    """

    net_module = "nas_attn.backbones.nets.wrn"
    has_width = True

    def __init__(self, depth: int, widen: int, reference: str) -> None:
        self.name = f"wrn{depth}_{widen}"
        self.depth, self.widen, self.reference = depth, widen, reference

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 4) // 6

    def stem_stride(self, small_input: bool) -> int:
        return 1

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        specs, cin = [], 16
        for stage, base in enumerate((16, 32, 64)):
            cout = scaled(base * self.widen, width)
            for i in range(self.blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                specs.append(LayerSpec(len(specs) + 1, "preact_basic", cin, cout, stride, residual=True))
                cin = cout
        return specs


_ZK = "Zagoruyko & Komodakis 2016 layout: {:,} params (10 classes)"
WRN16_8 = WideResNet(16, 8, _ZK.format(10_961_370))
WRN16_10 = WideResNet(16, 10, _ZK.format(17_116_634))
WRN28_10 = WideResNet(28, 10, _ZK.format(36_479_194) + "; the paper's Table 1: 36.5M")
