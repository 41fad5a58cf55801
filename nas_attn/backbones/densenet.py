"""DenseNets: every dense layer is a position, and every transition an insert-only position between them.

A dense layer's numbered output is the concatenation of its input and its new features, so a module
inserted after layer k attends over everything the next layer reads.
"""

from __future__ import annotations

from nas_attn.backbones.base import Backbone, LayerSpec


class DenseNet(Backbone):
    """Stem, dense blocks of bottleneck layers (BN-ReLU-1×1 conv to 4k, BN-ReLU-3×3 conv to k) with
    transitions (BN-ReLU-1×1 conv to half the channels, 2×2 average pool) between them, then BN-ReLU, average
    pool and a classifier.

    The ImageNet stem (``densenet121``) is a 7×7/2 conv, BN-ReLU and a 3×3/2 max-pool; ``small_input``
    replaces it by a 3×3/1 conv with BN-ReLU. The CIFAR stem (``densenet_bc100``) is a 3×3/1 conv to 2k
    channels with nothing after it (Huang et al. 2017), so ``small_input`` changes nothing there.
    """

    net_module = "nas_attn.backbones.nets.densenet"

    def __init__(self, name: str, growth: int, blocks: tuple[int, ...], stem_channels: int, *, cifar: bool,
                 reference: str) -> None:
        self.name, self.growth, self.blocks, self.stem_channels = name, growth, blocks, stem_channels
        self.cifar, self.reference = cifar, reference

    def stem_stride(self, small_input: bool) -> int:
        return 1 if small_input or self.cifar else 4

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        specs: list[LayerSpec] = []
        c = self.stem_channels
        for b, n in enumerate(self.blocks):
            for _ in range(n):
                specs.append(LayerSpec(len(specs) + 1, "dense_layer", c, c + self.growth, 1, block=False))
                c += self.growth
            if b < len(self.blocks) - 1:
                specs.append(LayerSpec(len(specs) + 1, "transition", c, c // 2, 2, block=False, padded=False))
                c //= 2
        return specs


DENSENET121 = DenseNet("densenet121", 32, (6, 12, 24, 16), 64, cifar=False,
                       reference="torchvision densenet121: 7,978,856 params (1000 classes)")
DENSENET_BC100 = DenseNet("densenet_bc100", 12, (16, 16, 16), 24, cifar=True,
                          reference="Huang et al. 2017 Table 2: 0.8M params (DenseNet-BC, L=100, k=12)")
