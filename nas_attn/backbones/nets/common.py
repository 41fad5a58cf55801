"""The numbered model every family builds, and how a module is attached to a numbered layer."""

from __future__ import annotations

import torch
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.resnetv2 import PreActBasic
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual


class NumberedNet(nn.Module):
    """``head(layers[n-1](…layers[0](stem(x))))``: ``layers[k-1]`` is numbered position k."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList(layers)
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class InsertAfter(nn.Module):
    """``attention(layer(x))``: a module inserted after a numbered layer (op ``insert``, ``k:1``)."""

    def __init__(self, layer: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.layer, self.attention = layer, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.layer(x))


class ShortcutAttention(nn.Module):
    """A block's shortcut S replaced by ``S(x) + A(S(x))``: op ``parallel`` (LADNet III.C) on a block whose
    forward adds ``shortcut`` to its residual branch before the final activation."""

    def __init__(self, shortcut: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.shortcut, self.attention = shortcut, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(x)
        return s + self.attention(s)


class ParallelAttention(nn.Module):
    """``block(x) + A(x)`` for a block with an identity shortcut and no activation after its addition
    (MobileNetV2's inverted residual, a pre-activation block): the same sum F(x) + x + A(x)."""

    def __init__(self, block: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.block, self.attention = block, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.attention(x)


def attach_inside(layer: nn.Module, module: nn.Module) -> nn.Module:
    """``layer`` with ``module`` at the end of its residual branch, before the skip addition."""
    if isinstance(layer, BasicBlock | Bottleneck):
        layer.se = module if layer.se is None else nn.Sequential(layer.se, module)  # timm's SE-ResNet slot
    elif isinstance(layer, PreActBasic):
        layer.conv2 = nn.Sequential(layer.conv2, module)
    elif isinstance(layer, InvertedResidual):
        layer.conv.append(module)  # torchvision adds the skip right after ``conv``
    else:
        raise TypeError(f"no residual branch in {type(layer).__name__}")
    return layer


def attach_parallel(layer: nn.Module, module: nn.Module) -> nn.Module:
    """``layer`` with ``module`` beside its branch and shortcut: ``act(F(x) + S(x) + A(S(x)))``.

    Decision (``docs/arch.md``, op ``parallel``): A reads the shortcut's output S(x) — the block input
    itself where the shortcut is the identity, its projection where the block changes shape — so that A sees
    what the main line sees, and a shape-preserving module fits a block that changes shape.
    """
    if isinstance(layer, BasicBlock | Bottleneck):
        layer.downsample = ShortcutAttention(layer.downsample or nn.Identity(), module)
        return layer
    if isinstance(layer, PreActBasic) and layer.downsample is not None:
        layer.downsample = ShortcutAttention(layer.downsample, module)
        return layer
    if isinstance(layer, PreActBasic | InvertedResidual):
        return ParallelAttention(layer, module)
    raise TypeError(f"no residual branch in {type(layer).__name__}")


def place(net: NumberedNet, position: int, op: str, module: nn.Module) -> None:
    """Put ``module`` at ``layers[position - 1]`` of a hand-written family's net by ``op``."""
    k = position - 1
    if op == "substitute":
        net.layers[k] = module
    elif op == "inside":
        net.layers[k] = attach_inside(net.layers[k], module)
    elif op == "parallel":
        net.layers[k] = attach_parallel(net.layers[k], module)
    else:
        net.layers[k] = InsertAfter(net.layers[k], module)


def stem_conv(in_chans: int, out_chans: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """A bias-free stem conv padded by kernel // 2, as torchvision's and timm's stems (for ``in_chans`` and
    ``small_input``)."""
    return nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, bias=False)


def init_convs(model: nn.Module) -> nn.Module:
    """He-normal (fan-out) conv weights, as torchvision's and timm's ResNets and the DRN authors initialise;
    for the families assembled here from blocks that do not initialise themselves."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model
