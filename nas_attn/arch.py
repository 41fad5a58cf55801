"""Arch and Placement (``docs/arch.md``): JSON round-trip and validation, without torch.

The model of an arch is built by :func:`nas_attn.build.build_model` (also ``nas_attn.build_model``).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nas_attn.backbones import OPS, Backbone, Position, get_backbone
from nas_attn.backbones.library import is_library_name, numbering_digest
from nas_attn.errors import ArchError, ModuleConfigError
from nas_attn.modules import check_options, check_positions, get_entry, resolve_groups

#: the largest input side and width multiplier an arch may ask for (beyond them nothing would fit in memory)
MAX_INPUT_SIZE = 4096
MAX_WIDTH = 16.0

#: how each op is written after the module in a compact placement (``5:la/par``); insert is written ``k:1``
OP_SHORT = {"insert": "", "substitute": "/sub", "inside": "/in", "parallel": "/par"}


@dataclass
class Placement:
    """One attention module placed at a numbered position.

    Attributes:
        position: layer number of the backbone (``docs/numbering.md``).
        module: registered module name (see :func:`nas_attn.modules.list_modules`).
        op: ``insert`` (after the layer, written ``k:1``), ``substitute`` (replaces the layer, ``k``),
            ``inside`` (end of the layer's residual branch, before the skip addition) or ``parallel`` (beside
            the residual branch and the shortcut, added before the block's final activation; LADNet III.C).
        groups: channel groups for modules that take them; ``None`` = the module's default.
        args: extra keyword arguments of the module (e.g. ``{"reduction": 8}``).
    """

    position: int
    module: str
    op: str = "insert"
    groups: int | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def short(self) -> str:
        """Compact form: ``14:ulsam/g4/sub`` (substitute), ``17:1 ulsam/g4`` (insert), ``5:se/in`` (inside),
        ``5:la/par`` (parallel)."""
        g = f"/g{self.groups}" if self.groups is not None else ""
        if self.op == "insert":
            return f"{self.position}:1 {self.module}{g}"
        return f"{self.position}:{self.module}{g}{OP_SHORT.get(self.op, '/' + str(self.op))}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"position": self.position, "op": self.op, "module": self.module}
        if self.groups is not None:
            d["groups"] = self.groups
        if self.args:
            d["args"] = dict(self.args)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "placement") -> Placement:
        if not isinstance(d, dict):
            raise ArchError(f"{where}: expected an object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ArchError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        missing = {"position", "module"} - set(d)
        if missing:
            raise ArchError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
        return cls(**d)


@dataclass
class Arch:
    """A backbone, its settings and a list of placements (``docs/arch.md``). JSON round-trips exactly.

    Attributes:
        backbone: a family name (see :func:`nas_attn.backbones.list_backbones`).
        variant: the family's variant (``resnet50``: ``"v1.5"``, the default, or ``"v1"``); ``None`` = the
            default. Written to JSON only when set.
        width: channel multiplier, for the families that have one.
        num_classes, input_size, in_chans: classifier outputs, input side in pixels, input channels.
        small_input: the family's variant for 28–64 px inputs (early downsampling removed).
        placements: the attention modules placed in the backbone.
        backbone_args: keyword arguments of a ``timm:``, ``torchvision:`` or ``py:`` backbone's factory
            (``{"drop_rate": 0.1}``); written to JSON only when set.
    """

    backbone: str
    width: float = 1.0
    num_classes: int = 1000
    input_size: int = 224
    in_chans: int = 3
    small_input: bool = False
    placements: list[Placement] = field(default_factory=list)
    variant: str | None = None
    backbone_args: dict[str, Any] = field(default_factory=dict)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"backbone": self.backbone}
        if self.variant is not None:
            d["variant"] = self.variant
        if self.backbone_args:
            d["backbone_args"] = dict(self.backbone_args)
        d.update({f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("backbone", "variant", "placements", "backbone_args")})
        d["placements"] = [p.to_dict() for p in self.placements]
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any) -> Arch:
        if not isinstance(d, dict):
            raise ArchError(f"arch: expected a JSON object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ArchError(f"arch: unknown key(s) {', '.join(sorted(unknown))}")
        if "backbone" not in d:
            raise ArchError("arch: missing key 'backbone'")
        placements = d.get("placements", [])
        if not isinstance(placements, list):
            raise ArchError("arch: 'placements' must be a list")
        kw = {k: v for k, v in d.items() if k != "placements"}
        return cls(**kw, placements=[Placement.from_dict(p, f"placement {i + 1}") for i, p in enumerate(placements)])

    @classmethod
    def from_json(cls, text: str) -> Arch:
        """Parse a JSON string, or read a ``.json`` file when ``text`` is a path to one."""
        if not text.lstrip().startswith("{"):
            text = _read_arch_file(text)
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        except RecursionError:
            raise ArchError("arch: JSON nested too deeply") from None

    def network_key(self) -> str:
        """What makes two archs one network wherever they are trained, as canonical JSON: backbone, variant
        (``None`` resolved to the family's default), width (``1`` and ``1.0`` equal), stem, and placements in
        the order they are built, groups resolved (left out = the module's default) and options in key order.
        The input size, channels and classes are left out: the dataset of the run that trains it sets them."""
        by_index = {p.index: p for p in self.positions()}
        placements = []
        for _, pl in order_for_build(self):
            d = pl.to_dict()
            pos = by_index.get(pl.position)
            d["groups"] = resolve_groups(pl.module, pos.out_channels, pl.groups) if pos is not None else pl.groups
            placements.append(d)
        d = {"backbone": self.backbone, "variant": self.resolved_variant(), "width": float(self.width),
             "small_input": self.small_input, "placements": placements}
        if self.backbone_args:
            d["backbone_args"] = self.backbone_args
        return json.dumps(d, sort_keys=True)

    def short(self) -> str:
        """Compact placement string, e.g. ``14:ulsam/g4/sub, 17:1 ulsam/g4``; ``vanilla`` when empty."""
        return ", ".join(p.short() for p in sorted(self.placements, key=_order)) or "vanilla"

    # -- validation ----------------------------------------------------------------------------
    def positions(self) -> list[Position]:
        """The backbone's positions at this arch's settings (validates the settings first)."""
        family = self._validate_settings()
        return family.positions(self.input_size, self.width, self.small_input, self.in_chans,
                                args=self.backbone_args)

    def numbering_record(self) -> dict[str, Any] | None:
        """``backbone``, ``positions`` (how many) and ``digest`` of a library backbone's automatic numbering at
        this arch's settings (what a run's manifest keeps); ``None`` for a hand-written family."""
        if not is_library_name(self.backbone):
            return None
        positions = self.positions()
        return {"backbone": self.backbone, "positions": len(positions), "digest": numbering_digest(positions)}

    def resolved_variant(self) -> str | None:
        """``variant``, or the family's default variant when it is ``None``."""
        variants = get_backbone(self.backbone).variants
        return self.variant if self.variant is not None else (variants[0] if variants else None)

    def validate(self) -> list[Position]:
        """Raise :class:`ArchError` naming the first invalid setting or placement; return the positions."""
        positions = self.positions()
        by_index = {p.index: p for p in positions}
        seen: dict[tuple[int, str], int] = {}
        for i, pl in enumerate(self.placements, 1):
            where = f"placement {i} ({_describe(pl)})"
            _check_types(pl, where)
            pos = self._check_position(pl, by_index, where)
            try:
                get_entry(pl.module)
                resolve_groups(pl.module, pos.out_channels, pl.groups)
                check_options(pl.module, pl.args)
                check_positions(pl.module, pos.side)
            except ModuleConfigError as exc:
                raise ArchError(f"{where}: {exc}") from None
            # one structural change per layer (substitute, inside or parallel), plus any number of inserts
            for key in [(pl.position, pl.op)] + ([(pl.position, "replace")] if pl.op != "insert" else []):
                if key in seen:
                    other = self.placements[seen[key] - 1]
                    raise ArchError(f"{where}: collides with placement {seen[key]} ({_describe(other)}) at "
                                    f"layer {pl.position}")
                seen[key] = i
        return positions

    def _check_position(self, pl: Placement, by_index: dict[int, Position], where: str) -> Position:
        pos = by_index.get(pl.position)
        if pos is None or not pos.ops:
            legal = [p for p in by_index if by_index[p].ops]
            raise ArchError(f"{where}: position {pl.position} out of range for {self.backbone} "
                            f"({legal[0]}-{legal[-1]})")
        if pl.op not in pos.ops:
            reason = {"substitute": "is not substitutable", "inside": "has no residual branch",
                      "parallel": "has no residual branch"}.get(pl.op, "")
            raise ArchError(f"{where}: layer {pl.position} ({pos.kind}, {pos.in_channels}->"
                            f"{pos.out_channels}, stride {pos.stride}) {reason}; legal ops: {', '.join(pos.ops)}")
        return pos

    def _validate_settings(self) -> Backbone:
        family = get_backbone(self.backbone)
        family.check_settings(self.small_input, self.backbone_args)
        _check_int(self, "num_classes", 1, 1_000_000)
        _check_int(self, "input_size", 8, MAX_INPUT_SIZE)
        _check_int(self, "in_chans", 1, 1024)
        if not isinstance(self.small_input, bool):
            raise ArchError(f"arch: small_input must be true or false, got {self.small_input!r}")
        w = self.width
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 < w <= MAX_WIDTH:
            raise ArchError(f"arch: width must be a number in (0, {MAX_WIDTH}], got {w!r}")
        if not family.has_width and w != 1.0:
            raise ArchError(f"arch: {self.backbone} has no width multiplier (width must be 1.0, got {w})")
        if self.variant is not None and self.variant not in family.variants:
            known = f"one of {', '.join(family.variants)}" if family.variants else "it has none"
            raise ArchError(f"arch: unknown variant {self.variant!r} for {self.backbone} ({known})")
        return family


#: the order in which placements at one layer are applied: structural changes first, then what is inserted after
BUILD_ORDER = ("substitute", "inside", "parallel", "insert")


def _order(p: Placement) -> tuple[int, int]:
    return (p.position, BUILD_ORDER.index(p.op) if p.op in BUILD_ORDER else len(BUILD_ORDER))


def order_for_build(arch: Arch) -> list[tuple[int, Placement]]:
    """``(number, placement)`` pairs (numbered from 1 as in error messages) in the order they are applied."""
    return sorted(enumerate(arch.placements, 1), key=lambda ip: _order(ip[1]))


def _describe(p: Placement) -> str:
    try:
        return p.short()
    except Exception:  # a malformed placement still needs a name in the error message
        return repr(p.to_dict())


def _check_types(pl: Placement, where: str) -> None:
    if not isinstance(pl.position, int) or isinstance(pl.position, bool):
        raise ArchError(f"{where}: position must be an integer, got {pl.position!r}")
    if pl.op not in OPS:
        raise ArchError(f"{where}: unknown op {pl.op!r} (one of {', '.join(OPS)})")
    if not isinstance(pl.module, str):
        raise ArchError(f"{where}: module must be a string, got {pl.module!r}")
    if pl.groups is not None and (not isinstance(pl.groups, int) or isinstance(pl.groups, bool)):
        raise ArchError(f"{where}: groups must be an integer or null, got {pl.groups!r}")
    if not isinstance(pl.args, dict):
        raise ArchError(f"{where}: args must be an object, got {pl.args!r}")


def _check_int(arch: Arch, name: str, low: int, high: int) -> None:
    v = getattr(arch, name)
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise ArchError(f"arch: {name} must be an integer in [{low}, {high}], got {v!r}")


def _read_arch_file(text: str) -> str:
    """``text`` when it is not the name of a file (then it is parsed as JSON), else the file's text; a name
    that is a folder, a FIFO or a device is refused without opening it (a FIFO would block)."""
    try:
        st = os.stat(text)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
            raise ArchError(f"arch: not valid JSON, and too long to be a file name ({text[:60]}…)") from None
        try:
            json.loads(text)
            return text  # JSON that is not an object: from_dict says what is wrong
        except (json.JSONDecodeError, RecursionError):
            pass
        if text.endswith(".json") or os.sep in text:
            raise ArchError(f"arch: {text[:200]}: no such file") from None
        return text
    if stat.S_ISDIR(st.st_mode):
        raise ArchError(f"arch: {text[:200]}: is a directory, not a .json file")
    if not stat.S_ISREG(st.st_mode):
        raise ArchError(f"arch: {text[:200]}: not a regular file (a FIFO or a device)")
    try:
        return Path(text).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ArchError(f"arch: cannot read {text[:200]} as UTF-8 text ({exc})") from None
