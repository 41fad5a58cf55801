"""What every backbone family provides: numbered layers, their positions and legal ops, and a model.

This module is torch-free, so that an arch or a search space can be validated without importing torch;
each family builds its model in a separate module (``nas_attn.backbones.nets.*``) imported on first build.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas_attn.errors import ArchError

if TYPE_CHECKING:
    from torch import nn

#: every op a placement may have (``docs/arch.md`` says what each does and where it is legal)
OPS = ("insert", "substitute", "inside", "parallel")


@dataclass(frozen=True)
class LayerSpec:
    """A numbered layer as built, independent of the input size.

    Attributes:
        residual: the layer ends in a skip addition, so ``inside`` and ``parallel`` are legal there.
        block: a repeatable block; only blocks with stride 1 and ``in_channels == out_channels`` may be
            substituted.
        padded: the layer's stride comes from a convolution or pool padded by k // 2 (output side
            ⌈side / stride⌉); ``False`` for an unpadded pool (⌊side / stride⌋, DenseNet's transitions).
    """

    index: int
    kind: str
    in_channels: int
    out_channels: int
    stride: int
    residual: bool = False
    block: bool = True
    padded: bool = True


@dataclass(frozen=True)
class Position:
    """A numbered layer at a given input size, with the ops legal there.

    ``side`` is the side of the layer's output map; ``ops`` is empty for a classifier head. ``name`` is the
    module path of an automatically numbered position (``layer1.0``), empty for a hand-written family.
    """

    index: int
    kind: str
    in_channels: int
    out_channels: int
    stride: int
    side: int
    ops: tuple[str, ...]
    name: str = ""

    @property
    def substitutable(self) -> bool:
        return "substitute" in self.ops

    def as_dict(self) -> dict[str, Any]:
        d = {
            "index": self.index, "kind": self.kind, "in_channels": self.in_channels,
            "out_channels": self.out_channels, "stride": self.stride, "side": self.side,
            "ops": list(self.ops),
        }
        return {**d, "name": self.name} if self.name else d


@dataclass(frozen=True)
class BuildSettings:
    """The arch settings a family builds its model from (``variant`` is already resolved; ``args`` are a
    library backbone's keyword arguments)."""

    num_classes: int
    in_chans: int
    width: float
    small_input: bool
    variant: str | None
    input_size: int = 224
    args: tuple[tuple[str, Any], ...] = ()


def out_side(side: int, stride: int, padded: bool = True) -> int:
    """Output side of a strided layer: ⌈side / stride⌉ for a k×k op padded by k // 2 (or 1×1), ⌊side /
    stride⌋ for an unpadded pool."""
    return (side - 1) // stride + 1 if padded else side // stride


def make_divisible(value: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of ``divisor`` as torchvision and timm round width multipliers (never
    more than 10 % below ``value``). Kept here, torch-free, so that positions need no torch; a test checks it
    against ``timm.layers.make_divisible``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class Backbone(ABC):
    """A backbone family. Subclasses define the layers; positions and legal ops follow from them.

    Attributes:
        name: the ``backbone`` of an arch.
        has_width: ``width`` scales the channels.
        variants: the accepted ``variant`` values, the first being the default; empty when there are none.
        head_index: index of a non-layer numbered position after the last layer (MobileNetV2's 20).
        net_module: the torch module that builds the model (``build(family, settings)``), imported lazily.
        reference: what the parameter count was checked against (shown by ``nas-attn backbones``).
    """

    name: str
    has_width: bool = False
    variants: tuple[str, ...] = ()
    head_index: int | None = None
    net_module: str
    reference: str = ""

    @abstractmethod
    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        """The numbered layers, first to last."""

    @abstractmethod
    def stem_stride(self, small_input: bool) -> int:
        """Downsampling done before layer 1 by an unnumbered stem."""

    def build(self, settings: BuildSettings) -> nn.Module:
        """A freshly initialised :class:`~nas_attn.backbones.nets.common.NumberedNet` whose ``layers[k-1]``
        is position k."""
        return importlib.import_module(self.net_module).build(self, settings)

    def check_settings(self, small_input: bool, args: Any) -> None:
        """Raise :class:`~nas_attn.errors.ArchError` for settings this family does not take."""
        if args:
            raise ArchError(f"arch: backbone_args are for timm:, torchvision: and py: backbones; {self.name} "
                            "takes none")

    def place(self, net: nn.Module, settings: BuildSettings, position: int, op: str, module: nn.Module) -> None:
        """Put attention ``module`` at numbered ``position`` of ``net`` (built by :meth:`build`) by ``op``."""
        from nas_attn.backbones.nets import common

        common.place(net, position, op, module)

    def features_path(self, net: nn.Module, settings: BuildSettings) -> str:
        """The path in ``net`` of its last numbered layer (where a trial's heatmaps of the features are taken)."""
        return f"layers.{len(net.layers) - 1}"

    def positions(
        self, input_size: int = 224, width: float = 1.0, small_input: bool = False, in_chans: int = 3,
        args: dict[str, Any] | None = None,
    ) -> list[Position]:
        """Every numbered position with its channels, output side at ``input_size`` and legal ops."""
        side = out_side(input_size, self.stem_stride(small_input))
        out: list[Position] = []
        for spec in self.layer_specs(width, small_input, in_chans):
            side = out_side(side, spec.stride, spec.padded)
            out.append(Position(spec.index, spec.kind, spec.in_channels, spec.out_channels, spec.stride,
                                side, legal_ops(spec)))
        if self.head_index is not None:
            last = out[-1]
            out.append(Position(self.head_index, "pool+classifier", last.out_channels, 0, 1, 1, ()))
        return out


def legal_ops(spec: LayerSpec) -> tuple[str, ...]:
    """``insert`` everywhere; ``substitute`` on shape-preserving blocks; ``inside``/``parallel`` on residual
    layers."""
    ops = ["insert"]
    if spec.block and spec.stride == 1 and spec.in_channels == spec.out_channels:
        ops.append("substitute")
    if spec.residual:
        ops += ["inside", "parallel"]
    return tuple(ops)
