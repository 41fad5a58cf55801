"""What every backbone family provides: numbered layers, their positions, and a model built from them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

OPS = ("insert", "substitute", "inside")


@dataclass(frozen=True)
class LayerSpec:
    """A numbered layer as built, independent of the input size."""

    index: int
    kind: str
    in_channels: int
    out_channels: int
    stride: int
    residual: bool = False  # has a residual branch ending in a skip addition (``inside`` is legal)
    block: bool = True  # a repeatable block (only blocks may be substituted)


@dataclass(frozen=True)
class Position:
    """A numbered layer at a given input size, with the ops legal there.

    ``side`` is the side of the layer's output map; ``ops`` is empty for the classifier head.
    """

    index: int
    kind: str
    in_channels: int
    out_channels: int
    stride: int
    side: int
    ops: tuple[str, ...]

    @property
    def substitutable(self) -> bool:
        return "substitute" in self.ops

    def as_dict(self) -> dict:
        return {
            "index": self.index, "kind": self.kind, "in_channels": self.in_channels,
            "out_channels": self.out_channels, "stride": self.stride, "side": self.side,
            "ops": list(self.ops),
        }


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


def _out_side(side: int, stride: int) -> int:
    # Every strided op in these backbones is k×k with padding k//2 (or 1×1, no padding): ⌈side/stride⌉.
    return (side - 1) // stride + 1


class Backbone(ABC):
    """A backbone family. Subclasses define the layers; positions and legality follow from them."""

    name: str
    has_width: bool = False
    #: index of a non-layer numbered position after the last layer (MobileNetV2's pool + classifier, 20)
    head_index: int | None = None

    @abstractmethod
    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        """The numbered layers, first to last."""

    @abstractmethod
    def stem_stride(self, small_input: bool) -> int:
        """Downsampling done before layer 1 by an unnumbered stem."""

    @abstractmethod
    def build(self, num_classes: int, in_chans: int, width: float, small_input: bool) -> NumberedNet:
        """A freshly initialised model whose ``layers[k-1]`` is position k."""

    def attach_inside(self, layer: nn.Module, module: nn.Module) -> None:
        """Put ``module`` at the end of ``layer``'s residual branch, before the skip addition."""
        raise NotImplementedError(f"{self.name} has no residual branch")

    def positions(
        self, input_size: int = 224, width: float = 1.0, small_input: bool = False, in_chans: int = 3
    ) -> list[Position]:
        """Every numbered position with its channels, output side at ``input_size`` and legal ops."""
        side = _out_side(input_size, self.stem_stride(small_input))
        out: list[Position] = []
        for spec in self.layer_specs(width, small_input, in_chans):
            side = _out_side(side, spec.stride)
            ops = ["insert"]
            if spec.block and spec.stride == 1 and spec.in_channels == spec.out_channels:
                ops.append("substitute")
            if spec.residual:
                ops.append("inside")
            out.append(Position(spec.index, spec.kind, spec.in_channels, spec.out_channels, spec.stride,
                                side, tuple(ops)))
        if self.head_index is not None:
            last = out[-1]
            out.append(Position(self.head_index, "pool+classifier", last.out_channels, 0, 1, 1, ()))
        return out


def replace_stem_conv(conv: nn.Conv2d, in_chans: int, stride: int) -> nn.Conv2d:
    """A conv like ``conv`` but with ``in_chans`` inputs and ``stride`` (for in_chans / small_input)."""
    k = conv.kernel_size[0]
    return nn.Conv2d(in_chans, conv.out_channels, k, stride, k // 2, bias=conv.bias is not None)
