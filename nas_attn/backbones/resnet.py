"""ResNet-like families: position k is the k-th residual block in forward order.

ResNet-18/34/50 (``width``; ResNet-50 ``variant`` v1.5 or v1), torchvision's ResNeXt-50 32×4d and
Wide-ResNet-50-2, CIFAR ResNeXt-29 (Xie et al. 2017) and DRN-A-50 (Yu, Koltun, Funkhouser 2017) are all
stages of basic or bottleneck blocks, built from timm's ``ResNet`` (``nas_attn.backbones.nets.resnet``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nas_attn.backbones.base import Backbone, LayerSpec


@dataclass(frozen=True)
class ResNetLayout:
    """The block layout of a ResNet-like family.

    Attributes:
        bottleneck: bottleneck blocks (expansion 4) instead of basic blocks.
        depths: blocks per stage.
        channels: each stage's block width (``planes``) at width 1.0; a block outputs ``planes × expansion``.
        cardinality, base_width: grouped 3×3 convs as torchvision/timm define them (inner width
            ``⌊planes · base_width / 64⌋ · cardinality``).
        cifar_stem: a 3×3 stride-1 stem conv without max-pool, whatever ``small_input`` says.
        dilated_stages: the last stages whose stride is replaced by dilation 2, 4 (DRN-A: 2).
    """

    bottleneck: bool
    depths: tuple[int, ...]
    channels: tuple[int, ...] = (64, 128, 256, 512)
    cardinality: int = 1
    base_width: int = 64
    cifar_stem: bool = False
    dilated_stages: int = 0

    @property
    def expansion(self) -> int:
        return 4 if self.bottleneck else 1


#: the channels of timm's single-conv ResNet stem (and torchvision's)
STEM_CHANNELS = 64


class ResNetFamily(Backbone):
    """Stem (7×7/2 conv + 3×3/2 max-pool; ``small_input`` or a CIFAR net: 3×3/1 conv, no max-pool, as LGAM
    section 3.1 does for CIFAR), then numbered residual blocks, then global average pool and a classifier.

    ``width`` (where allowed) multiplies every stage's channels, rounded to an integer (the stem keeps 64):
    CSM's "WideResNet18 (widen = 1.5)" is ``resnet18`` with ``width: 1.5``.
    """

    net_module = "nas_attn.backbones.nets.resnet"

    def __init__(self, name: str, layout: ResNetLayout, *, has_width: bool = False,
                 variants: tuple[str, ...] = (), reference: str = "") -> None:
        self.name, self.layout = name, layout
        self.has_width, self.variants, self.reference = has_width, variants, reference

    def stem_stride(self, small_input: bool) -> int:
        return 1 if small_input or self.layout.cifar_stem else 4

    def stem_width(self, width: float) -> int:
        """The stem's channels: timm's ResNet stem has 64 whatever the width (its ``stem_width`` sizes deep
        stems only), so at a width other than 1 the first block projects its shortcut (64 → its width)."""
        return STEM_CHANNELS

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        lay = self.layout
        kind = "bottleneck" if lay.bottleneck else "basic"
        specs, cin = [], self.stem_width(width)
        for stage, (n, planes) in enumerate(zip(lay.depths, lay.channels, strict=True)):
            cout = scaled(planes, width) * lay.expansion
            dilated = stage >= len(lay.depths) - lay.dilated_stages
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 and not dilated else 1
                specs.append(LayerSpec(len(specs) + 1, kind, cin, cout, stride, residual=True))
                cin = cout
        return specs


def scaled(channels: int, width: float) -> int:
    """``channels × width`` rounded to the nearest integer (at least 1)."""
    return max(1, round(channels * width))


_TV = "torchvision {}: {:,} params (1000 classes)"

RESNET18 = ResNetFamily("resnet18", ResNetLayout(False, (2, 2, 2, 2)), has_width=True,
                        reference=_TV.format("resnet18", 11_689_512))
RESNET34 = ResNetFamily("resnet34", ResNetLayout(False, (3, 4, 6, 3)), has_width=True,
                        reference=_TV.format("resnet34", 21_797_672))
#: v1.5 (stride in the 3×3 conv, torchvision's) is the default; v1 strides the first 1×1 conv (He et al. 2016)
RESNET50 = ResNetFamily("resnet50", ResNetLayout(True, (3, 4, 6, 3)), has_width=True, variants=("v1.5", "v1"),
                        reference=_TV.format("resnet50", 25_557_032))
RESNEXT50_32X4D = ResNetFamily("resnext50_32x4d", ResNetLayout(True, (3, 4, 6, 3), cardinality=32, base_width=4),
                               reference=_TV.format("resnext50_32x4d", 25_028_904))
WIDE_RESNET50_2 = ResNetFamily("wide_resnet50_2", ResNetLayout(True, (3, 4, 6, 3), base_width=128),
                               reference=_TV.format("wide_resnet50_2", 68_883_240))
RESNEXT29_8X64D = ResNetFamily(
    "resnext29_8x64d", ResNetLayout(True, (3, 3, 3), (64, 128, 256), 8, 64, cifar_stem=True),
    reference="Xie et al. 2017 Table 7: 34.4M params (CIFAR)")
RESNEXT29_32X4D = ResNetFamily(
    "resnext29_32x4d", ResNetLayout(True, (3, 3, 3), (64, 128, 256), 32, 4, cifar_stem=True),
    reference="Xie et al. 2017 CIFAR layout with cardinality 32, width 4 (no published count)")
#: DRN-A-50: ResNet-50 whose stages 4 and 5 trade their stride for dilation 2 and 4 (first block of each
#: dilated stage undilated, as the authors' ``drn.py``); parameters equal ResNet-50's.
DRN_A_50 = ResNetFamily("drn_a_50", ResNetLayout(True, (3, 4, 6, 3), dilated_stages=2), has_width=True,
                        reference="fyu/drn drn.py drn_a_50: 25,557,032 params (1000 classes; README 25.6M)")

RESNET_FAMILIES = (RESNET18, RESNET34, RESNET50, RESNEXT50_32X4D, WIDE_RESNET50_2, RESNEXT29_8X64D,
                   RESNEXT29_32X4D, DRN_A_50)
