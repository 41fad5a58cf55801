"""Backbones that are not written here: ``timm:<name>``, ``torchvision:<name>`` and ``py:<module>:<factory>``.

Their positions are numbered automatically from the model's own structure (``docs/numbering.md``, "Any
CNN") by :mod:`nas_attn.backbones.nets.auto`, which builds the model on the meta device and records one
forward pass; so, unlike the hand-written families, they need torch to be validated. The numbering of one
model at one input size is computed once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from nas_attn.backbones.base import Backbone, BuildSettings, LayerSpec, Position
from nas_attn.errors import ArchError

if TYPE_CHECKING:
    from torch import nn

#: the prefixes of a library backbone's name, and what follows each
PREFIXES = {"timm:": "a timm model name", "torchvision:": "a torchvision.models classification model name",
            "py:": "package.module:factory"}
_PY_NAME = re.compile(r"^py:([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")
_LIB_NAME = re.compile(r"^(timm|torchvision):([A-Za-z0-9_.\-]+)$")
#: keyword arguments the arch sets itself, or that would load weights
RESERVED_ARGS = {"num_classes", "in_chans", "weights", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
                 "checkpoint_path"}


def is_library_name(name: object) -> bool:
    """``name`` asks for a library or user backbone (it has one of the :data:`PREFIXES`)."""
    return isinstance(name, str) and name.startswith(tuple(PREFIXES))


class LibraryBackbone(Backbone):
    """A timm, torchvision or user model, numbered automatically.

    Attributes:
        library: ``timm``, ``torchvision`` or ``py``.
        model_name: the library's model name, or ``package.module:factory``.
    """

    has_width = False
    net_module = "nas_attn.backbones.nets.auto"

    def __init__(self, name: str) -> None:
        m = _LIB_NAME.fullmatch(name) or _PY_NAME.fullmatch(name)  # fullmatch: "$" would let a final newline in
        if m is None:
            prefix = next(p for p in PREFIXES if name.startswith(p))
            raise ArchError(f"backbone {name!r}: expected {prefix}<{PREFIXES[prefix]}>")
        self.name = name
        self.library = name.partition(":")[0]
        self.model_name = name.partition(":")[2]
        self.reference = f"{self.library} {self.model_name} (numbered automatically)"

    def layer_specs(self, width: float = 1.0, small_input: bool = False, in_chans: int = 3) -> list[LayerSpec]:
        raise NotImplementedError("a library backbone's positions come from its model (positions())")

    def stem_stride(self, small_input: bool) -> int:
        return 1

    def positions(self, input_size: int = 224, width: float = 1.0, small_input: bool = False, in_chans: int = 3,
                  args: dict[str, Any] | None = None) -> list[Position]:
        return list(_numbered(self.name, input_size, in_chans, _frozen(args)))

    def build(self, settings: BuildSettings) -> nn.Module:
        from nas_attn.backbones.nets import auto

        return auto.create_model(self, settings)

    def place(self, net: nn.Module, settings: BuildSettings, position: int, op: str, module: nn.Module) -> None:
        from nas_attn.backbones.nets import auto

        units = auto.numbering(self.name, settings.input_size, settings.in_chans, dict(settings.args))
        auto.place(net, units[position - 1], op, module)

    def features_path(self, net: nn.Module, settings: BuildSettings) -> str:
        from nas_attn.backbones.nets import auto

        return auto.numbering(self.name, settings.input_size, settings.in_chans, dict(settings.args))[-1].paths[-1]

    def check_settings(self, small_input: bool, args: Any) -> None:
        if small_input:
            raise ArchError(f"arch: small_input applies to the hand-written families only; {self.name} is built "
                            "as its library builds it")
        if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            raise ArchError(f"arch: backbone_args must be an object of keyword arguments, got {args!r}"[:300])
        reserved = sorted(set(args) & RESERVED_ARGS)
        if reserved:
            raise ArchError(f"arch: backbone_args: {', '.join(reserved)} cannot be given there (num_classes and "
                            "in_chans come from the dataset; weights are not loaded: a search trains from scratch)")
        try:
            json.dumps(args)
        except (TypeError, ValueError):
            raise ArchError("arch: backbone_args must hold JSON values only (numbers, strings, lists, "
                            "objects)") from None


def numbering_digest(positions: list[Position]) -> str:
    """A digest of a numbering (every position's path, kind, channels, stride, side and ops): what a resumed run
    must find again, since its trials' placements name positions by number."""
    text = json.dumps([p.as_dict() for p in positions], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _frozen(args: dict[str, Any] | None) -> str:
    """``args`` as a hashable key (canonical JSON)."""
    return json.dumps(args or {}, sort_keys=True)


@functools.lru_cache(maxsize=64)
def _numbered(name: str, input_size: int, in_chans: int, args: str) -> tuple[Position, ...]:
    from nas_attn.backbones.nets import auto

    units = auto.numbering(name, input_size, in_chans, json.loads(args))
    return tuple(Position(i, u.kind, u.in_channels, u.out_channels, u.stride, u.side, u.ops(), name=u.paths[0])
                 for i, u in enumerate(units, 1))
