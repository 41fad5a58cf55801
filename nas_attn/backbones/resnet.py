"""ResNet-18/34/50: position k is the k-th residual block in forward order (torchvision's blocks)."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck

from nas_attn.backbones.base import Backbone, LayerSpec, NumberedNet, replace_stem_conv


class ResNet(Backbone):
    """Stem (7×7/2 conv + max-pool; ``small_input``: 3×3/1 conv, no max-pool, as LGAM 3.1), numbered blocks."""

    def __init__(self, name: str, factory, depths: tuple[int, ...], expansion: int) -> None:
        self.name, self._factory, self._depths, self._expansion = name, factory, depths, expansion

    def stem_stride(self, small_input: bool) -> int:
        return 1 if small_input else 4

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        kind = "bottleneck" if self._expansion > 1 else "basic"
        specs, cin = [], 64
        for stage, n in enumerate(self._depths):
            cout = 64 * 2**stage * self._expansion
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                specs.append(LayerSpec(len(specs) + 1, kind, cin, cout, stride, residual=True))
                cin = cout
        return specs

    def build(self, num_classes: int, in_chans: int, width: float, small_input: bool) -> NumberedNet:
        net = self._factory(num_classes=num_classes)
        conv1, maxpool = net.conv1, net.maxpool
        if small_input:
            conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
            maxpool = nn.Identity()
        elif in_chans != 3:
            conv1 = replace_stem_conv(conv1, in_chans, 2)
        stem = nn.Sequential(conv1, net.bn1, net.relu, maxpool)
        blocks = [b for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for b in stage]
        head = nn.Sequential(net.avgpool, nn.Flatten(1), net.fc)
        return NumberedNet(stem, blocks, head)

    def attach_inside(self, layer: nn.Module, module: nn.Module) -> None:
        # torchvision adds the identity right after the last BN of the branch (as SE-ResNet places SE)
        if isinstance(layer, Bottleneck):
            layer.bn3 = nn.Sequential(layer.bn3, module)
        elif isinstance(layer, BasicBlock):
            layer.bn2 = nn.Sequential(layer.bn2, module)
        else:
            raise TypeError(f"not a ResNet block: {type(layer).__name__}")


RESNET18 = ResNet("resnet18", resnet18, (2, 2, 2, 2), 1)
RESNET34 = ResNet("resnet34", resnet34, (3, 4, 6, 3), 1)
RESNET50 = ResNet("resnet50", resnet50, (3, 4, 6, 3), 4)
