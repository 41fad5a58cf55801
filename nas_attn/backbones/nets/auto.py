"""Automatic numbering of any CNN (``docs/numbering.md``, "Any CNN"), and placing modules by it.

The rule, applied to one recorded forward pass (:mod:`nas_attn.backbones.nets.trace`):

1. The model's called children, in call order, are its items. An item is opened (its called children
   become items in its place) when it is a *container*: called once, its children chained (each takes the
   previous one's output, its output is the last one's), holding at least two convolutions, and, unless it
   is an ``nn.Sequential`` (a list of layers), calling at least two children and holding no convolution
   itself (a module that holds its convolutions itself is a block someone designed as one unit: a
   depthwise-separable conv, a ConvNormAct; one that wraps a single child is that child). A *dense block* (each
   child takes the outputs of all before it) is opened too: its dense layers are items.
2. An item that holds a convolution starts a unit (a numbered position); one that holds none (a norm, an
   activation, a pool, a dropout) joins the unit before it, or the unnumbered stem when there is none.
3. The trunk ends at the first item whose output is not a channels-first map or comes from an adaptive
   (global) pooling: from there on is the head, never numbered.
4. A unit whose first module's output is made by adding its input (or a shortcut module's output on
   it) to a module's output — possibly followed by an activation — has a residual branch: ``inside`` puts
   the attention module after that branch's last module, ``parallel`` beside the branch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib
import inspect
import json
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas_attn.backbones.nets.trace import Call, Trace, record
from nas_attn.errors import ArchError

#: what torch says when a map has shrunk to nothing (a pool or conv larger than its input)
COLLAPSED = ("too small", "output size is too small", "non-positive", "greater than 0", "kernel size can't be greater")
#: tensor functions that add (the residual addition: ``a + b``, ``a += b``, ``torch.add``)
ADDS = {"add", "add_", "__add__", "__iadd__", "__radd__"}


@dataclass(frozen=True)
class Residual:
    """Where a unit's residual addition gets its operands.

    Attributes:
        branch: the first module that returned the branch's final tensor (``inside`` goes right after it:
            before a drop-path that passes the tensor on, as timm's SE slot sits).
        beside: the last module that returned it (``parallel`` on an identity shortcut followed by an
            activation adds A(x) after it: after a drop-path, so that A is not dropped with the branch).
        shortcut: the shortcut module, ``None`` for the identity.
        activated: an activation follows the addition.
    """

    branch: str
    shortcut: str | None
    activated: bool
    beside: str = ""


@dataclass(frozen=True)
class Unit:
    """A numbered position of a model: its module paths (the first starts it), shapes and residual branch."""

    paths: tuple[str, ...]
    kind: str
    in_channels: int
    out_channels: int
    stride: int
    side: int
    dense: bool = False
    residual: Residual | None = None

    #: the unit's first module is called with more than one tensor (a DLA tree node, a dense layer's list)
    inputs: int = 1

    def ops(self) -> tuple[str, ...]:
        ops = ["insert"]
        single = self.inputs == 1 and not self.dense
        if single and self.stride == 1 and self.in_channels == self.out_channels:
            ops.append("substitute")
        if self.residual is not None:
            ops += ["inside", "parallel"] if single else ["inside"]
        return tuple(ops)


class NumberingError(ValueError):
    """The model cannot be numbered; the message says why in one line."""


def is_conv(module: nn.Module) -> bool:
    """A convolution: a leaf with a kernel of four or more dimensions (``nn.Conv2d`` and timm's own convs)."""
    return next(module.children(), None) is None and any(p.dim() >= 4 for p in module.parameters(recurse=False))


def number(model: nn.Module, input_size: int, in_chans: int) -> list[Unit]:
    """The units of ``model`` (built on the meta device) at ``input_size``; raises :class:`NumberingError`."""
    example = torch.zeros(1, in_chans, input_size, input_size, device="meta")
    try:
        trace = record(model, example)
    except Exception as exc:  # any failure of the forward pass is the model's answer: say it in one line
        raise NumberingError(f"its forward pass at {input_size} px fails ({forward_failure(exc)})") from None
    return _Numbering(model, trace).units()


def forward_failure(exc: Exception) -> str:
    text = first_line(exc)
    if any(phrase in text.lower() for phrase in COLLAPSED):
        return f"a map collapses to nothing: {text[:160]}"
    return f"{type(exc).__name__}: {text[:160]}"


class _Numbering:
    def __init__(self, model: nn.Module, trace: Trace) -> None:
        self.model, self.trace = model, trace
        self.modules = dict(model.named_modules())
        self.children_of: dict[str, list[str]] = {}
        for path in trace.calls:
            if path:  # a ModuleList or ModuleDict is never called: its members are its caller's children
                parent = path.rpartition(".")[0]
                while parent and parent not in trace.calls:
                    parent = parent.rpartition(".")[0]
                self.children_of.setdefault(parent, []).append(path)
        for kids in self.children_of.values():
            kids.sort(key=lambda p: trace.calls[p].order)
        self.convs = {p for p in trace.calls if is_conv(self.modules[p])}
        # modules that compute something themselves, not only through their children (an in-place ``+=`` keeps
        # a tensor's id, so a residual block could otherwise pass for a chain of its children)
        self.computing = {op.within[-1] for op in trace.ops if op.within}

    # -- the items ----------------------------------------------------------------------------------------
    def holds_conv(self, path: str) -> bool:
        return any(c == path or c.startswith(path + ".") or not path for c in self.convs)

    def conv_count(self, path: str) -> int:
        return sum(1 for c in self.convs if c == path or c.startswith(path + "."))

    def chained(self, path: str) -> bool:
        call, kids = self.trace.calls[path], self.children_of.get(path, [])
        if not kids or call.output is None or path in self.computing:
            return False
        previous = call.inputs[:1]
        for kid in kids:
            k = self.trace.calls[kid]
            if k.times != 1 or not previous or previous[0] not in k.inputs:
                return False
            previous = (k.output,) if k.output is not None else ()
        return previous[:1] == (call.output,)

    def dense(self, path: str) -> bool:
        call, kids = self.trace.calls[path], self.children_of.get(path, [])
        if len(kids) < 2 or len({type(self.modules[k]) for k in kids}) != 1:
            return False
        seen = set(call.inputs[:1])
        for kid in kids:
            k = self.trace.calls[kid]
            if k.times != 1 or not seen <= set(k.inputs):
                return False
            seen.add(k.output)
        return True

    def container(self, path: str) -> bool:
        call, module = self.trace.calls[path], self.modules[path]
        if call.times != 1 or self.conv_count(path) < 2:
            return False
        if not self.chained(path):
            return False
        if isinstance(module, nn.Sequential):
            return True
        kids = self.children_of.get(path, [])
        return len(kids) >= 2 and not any(k in self.convs for k in kids)

    def items(self, path: str = "") -> list[tuple[str, bool]]:
        """``(path, is a dense layer)`` of every item, in call order."""
        out: list[tuple[str, bool]] = []
        for kid in self.children_of.get(path, []):
            while isinstance(self.modules[kid], nn.Sequential) and len(self.children_of.get(kid, [])) == 1:
                kid = self.children_of[kid][0]  # a list of one layer is that layer
            if self.container(kid):
                out += self.items(kid)
            elif self.trace.calls[kid].times == 1 and self.conv_count(kid) >= 2 and self.dense(kid):
                out += [(k, True) for k in self.children_of[kid]]
            else:
                out.append((kid, False))
        return out

    # -- the units ----------------------------------------------------------------------------------------
    def ends_trunk(self, path: str) -> bool:
        call = self.trace.calls[path]
        if call.out_shape is None or len(call.out_shape) != 4 or call.out_is_tuple:
            return True
        return any(isinstance(self.modules[m], nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d)
                   for m in self.trace.makers.get(call.output, ()))

    def units(self) -> list[Unit]:
        groups: list[list[tuple[str, bool]]] = []
        for path, dense in self.items():
            if self.ends_trunk(path):
                break
            if self.trace.calls[path].times > 1:  # a module called twice (a shared ReLU): nothing wraps it
                continue
            if self.holds_conv(path):
                groups.append([(path, dense)])
            elif groups:
                groups[-1].append((path, dense))
        return [self.unit(g) for g in groups]

    def unit(self, group: list[tuple[str, bool]]) -> Unit:
        first, last = self.trace.calls[group[0][0]], self.trace.calls[group[-1][0]]
        in_channels = sum(s[1] for s in first.in_shapes if len(s) == 4)
        in_side = next((s[-1] for s in first.in_shapes if len(s) == 4), 0)
        side = last.out_shape[-1]
        stride = max(1, round(in_side / side)) if side else 1
        paths = tuple(p for p, _ in group)
        # a norm or activation joined after a residual block leaves its branch where it was
        residual = None if group[0][1] else self.residual(paths[0])
        return Unit(paths, type(self.modules[paths[0]]).__name__, in_channels, last.out_shape[1], stride, side,
                    dense=group[0][1], residual=residual, inputs=len(first.inputs))

    def residual(self, path: str) -> Residual | None:
        """The residual addition of block ``path``: the last addition of two tensors in its forward after
        which only functions of the sum alone (an activation, in place or not) lead to its output."""
        call = self.trace.calls[path]
        inside = [(i, op) for i, op in enumerate(self.trace.ops) if path in op.within]
        for k in range(len(inside) - 1, -1, -1):
            at, add = inside[k]
            if add.name not in ADDS or len(add.inputs) != 2:
                continue
            tensor, after = add.output, [op for _, op in inside[k + 1:]]
            if any(op.inputs != (tensor,) for op in after):
                return None
            for op in after:
                tensor = op.output
            if tensor != call.output:
                return None
            a, b = add.inputs
            for branch, shortcut in ((a, b), (b, a)):
                found = self._branch_and_shortcut(path, call, branch, shortcut, at)
                if found is not None:
                    return found if not after else dataclasses.replace(found, activated=True)
            return None
        return None

    def makers(self, path: str, tensor: int, before: int) -> list[str]:
        """The outermost modules inside ``path``, each called once, that returned ``tensor`` before op number
        ``before`` ran, in the order their calls ended (an Identity or a container may return what an inner
        module made: what wraps the outermost wraps them all)."""
        calls = self.trace.calls
        found = [m for m in self.trace.makers.get(tensor, ()) if m.startswith(path + ".") and calls[m].times == 1
                 and 0 <= calls[m].ended <= before]
        depth = min((m.count(".") for m in found), default=0)
        return sorted((m for m in found if m.count(".") == depth), key=lambda m: calls[m].ended)

    def _branch_and_shortcut(self, path: str, call: Call, branch: int, shortcut: int, at: int) -> Residual | None:
        x = call.inputs[0] if call.inputs else None
        short = None
        if shortcut != x:
            shorts = self.makers(path, shortcut, at)
            if not shorts or x not in self.trace.calls[shorts[-1]].inputs:
                return None
            short = shorts[-1]
        ends = [m for m in self.makers(path, branch, at) if m != short]
        if not ends or branch == x or call.out_is_tuple or self.trace.calls[ends[0]].out_shape != call.out_shape:
            return None
        return Residual(ends[0], short, activated=False, beside=ends[-1])


# -- models ---------------------------------------------------------------------------------------------------
def library_model(name: str, num_classes: int, in_chans: int, args: dict[str, Any]) -> nn.Module:
    """The model a library backbone name asks for, freshly initialised on the current default device."""
    library, _, model_name = name.partition(":")
    with warnings.catch_warnings():  # torchvision warns that GoogLeNet's and Inception's init will change
        warnings.simplefilter("ignore")
        if library == "timm":
            return _timm_model(model_name, num_classes, in_chans, args)
        if library == "torchvision":
            return _torchvision_model(model_name, num_classes, in_chans, args)
        return _user_model(model_name, num_classes, in_chans, args)


def _timm_model(model_name: str, num_classes: int, in_chans: int, args: dict[str, Any]) -> nn.Module:
    import timm

    if not timm.is_model(model_name):
        raise NumberingError(f"no timm model {model_name!r} in timm {timm.__version__}"
                             f"{_close(model_name, timm.list_models())}")
    return _called(f"timm.create_model({model_name!r})", timm.create_model, model_name, num_classes=num_classes,
                   in_chans=in_chans, **args)


def _torchvision_model(model_name: str, num_classes: int, in_chans: int, args: dict[str, Any]) -> nn.Module:
    import torchvision
    from torchvision import models

    names = models.list_models(module=models)
    if model_name not in names:
        raise NumberingError(f"no torchvision classification model {model_name!r} in torchvision "
                             f"{torchvision.__version__}{_close(model_name, names)}")
    model = _called(f"torchvision.models.get_model({model_name!r})", models.get_model, model_name, weights=None,
                    num_classes=num_classes, **args)
    return adapt_in_chans(model, in_chans)


def _user_model(target: str, num_classes: int, in_chans: int, args: dict[str, Any]) -> nn.Module:
    module_name, _, factory_name = target.partition(":")
    try:
        with torch.device("cpu"):  # what the module makes as it is imported stays a real tensor
            module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any error of its import, in one line
        raise NumberingError(f"cannot import {module_name} ({type(exc).__name__}: {first_line(exc)})") from None
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise NumberingError(f"{module_name} has no {factory_name}")
    if not callable(factory):
        raise NumberingError(f"{target} is not callable")
    accepted = _accepted(factory)
    given = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if accepted(k)}
    if "num_classes" not in given:
        raise NumberingError(f"{target} takes no num_classes argument (a factory must accept it, as timm's do)")
    model = _called(target, factory, **given, **args)
    if not isinstance(model, nn.Module):
        raise NumberingError(f"{target} returned a {type(model).__name__}, not a torch nn.Module")
    return model if "in_chans" in given else adapt_in_chans(model, in_chans)


def _accepted(fn: Any):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return lambda name: False
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return lambda name: True
    return lambda name: name in params


def _called(what: str, fn: Any, *args: Any, **kwargs: Any) -> nn.Module:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the factory's own error, in one line
        error = NumberingError(f"{what} raised {type(exc).__name__}: {first_line(exc)}")
        # a builder that computes its layout with tensors fails on the meta device (torchvision's RegNets)
        error.needs_cpu = torch.get_default_device().type == "meta" and "meta" in str(exc).lower()
        raise error from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _close(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def adapt_in_chans(model: nn.Module, in_chans: int) -> nn.Module:
    """``model`` with its first 3-channel convolution rebuilt for ``in_chans`` (a library without an
    ``in_chans`` argument); unchanged at 3."""
    if in_chans == 3:
        return model
    path, conv = next(((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
                      (None, None))
    if conv is None:
        raise NumberingError(f"has no 3-channel input convolution to adapt to {in_chans} channels")
    model.set_submodule(path, nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                        conv.dilation, conv.groups if conv.groups == 1 else 1,
                                        conv.bias is not None, conv.padding_mode))
    return model


def meta_model(name: str, num_classes: int, in_chans: int, args: dict[str, Any]) -> nn.Module:
    """The model on the meta device: built under ``torch.device("meta")``, or, for the builders that compute
    their layout with tensors (torchvision's RegNets call ``.tolist()``), on the CPU with each parameter and
    buffer moved to the meta device as it is registered, so that its initialisation costs nothing."""
    try:
        with torch.device("meta"):
            return library_model(name, num_classes, in_chans, args)
    except NumberingError as exc:
        if not getattr(exc, "needs_cpu", False):
            raise
    with _PATCHING, torch.device("cpu"), _registered_on_meta():
        return library_model(name, num_classes, in_chans, args)


#: one patch of nn.Module at a time (another thread building a model meanwhile would get meta parameters too;
#: the numbering runs in the thread that validates an arch)
_PATCHING = threading.Lock()


@contextlib.contextmanager
def _registered_on_meta():
    # by hand: torch has no public switch for "allocate parameters on meta but compute everything else on the
    # CPU" (accelerate's init_empty_weights does this; it is not a dependency here)
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter_on_meta(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer_on_meta(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter_on_meta, buffer_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


@functools.lru_cache(maxsize=64)
def _units(name: str, input_size: int, in_chans: int, args_json: str) -> tuple[Unit, ...]:
    model = meta_model(name, 10, in_chans, json.loads(args_json))
    units = number(model, input_size, in_chans)
    if len(units) < 2:
        found = f"found {len(units)}" if units else "found none"
        raise NumberingError(f"no block sequence: fewer than two blocks holding convolutions give channels-first "
                             f"maps ({found}; a vision transformer's blocks work on token sequences)")
    return tuple(units)


def numbering(name: str, input_size: int, in_chans: int, args: dict[str, Any]) -> tuple[Unit, ...]:
    """The units of a library backbone at an input size (computed once per process); raises
    :class:`ArchError` naming the model and why when it cannot be numbered."""
    try:
        return _units(name, input_size, in_chans, json.dumps(args, sort_keys=True))
    except NumberingError as exc:
        raise ArchError(f"backbone {name}: {exc}") from None


def create_model(family: Any, settings: Any) -> nn.Module:
    """The model of a library backbone (``LibraryBackbone.build``), freshly initialised."""
    args = dict(settings.args)
    try:
        if torch.get_default_device().type == "meta":  # counting (complexity): the builders that need the CPU too
            return meta_model(family.name, settings.num_classes, settings.in_chans, args)
        return library_model(family.name, settings.num_classes, settings.in_chans, args)
    except NumberingError as exc:
        raise ArchError(f"backbone {family.name}: {exc}") from None


# -- placing a module ---------------------------------------------------------------------------------------
class Then(nn.Module):
    """``attention(layer(*args))``: op ``insert`` after (or ``inside`` at the end of) a library model's module,
    which its parent may call with several arguments (a DLA tree node takes its children's outputs)."""

    def __init__(self, layer: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.layer, self.attention = layer, attention

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.attention(self.layer(*args, **kwargs))


class BesideIdentity(nn.Module):
    """A block with an identity shortcut and an activation after its sum, given op ``parallel``:
    ``act(F(x) + x + A(x))``. ``A(x)`` is added to the branch's last output (what ``branch`` names inside the
    block) — the only place before the activation — so the block's own code is not touched. It hands A(x) to
    that module for the length of one call: not re-entrant, and not for activation checkpointing."""

    def __init__(self, block: nn.Module, branch: str, attention: nn.Module) -> None:
        super().__init__()
        block.set_submodule(branch, _PlusBeside(block.get_submodule(branch)))
        self.block, self.branch, self.attention = block, branch, attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = self.block.get_submodule(self.branch)
        end.beside = self.attention(x)
        try:
            return self.block(x)
        finally:
            end.beside = None


class _PlusBeside(nn.Module):
    def __init__(self, end: nn.Module) -> None:
        super().__init__()
        self.end, self.beside = end, None

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.end(y) + self.beside


def place(model: nn.Module, unit: Unit, op: str, module: nn.Module) -> None:
    """Put attention ``module`` at ``unit`` of ``model`` by ``op`` (``docs/arch.md`` says what each op does)."""
    from nas_attn.backbones.nets.common import ParallelAttention, ShortcutAttention

    get, put = model.get_submodule, model.set_submodule
    if op == "insert":
        put(unit.paths[-1], Then(get(unit.paths[-1]), module))
    elif op == "substitute":
        put(unit.paths[0], module)
        for path in unit.paths[1:]:
            put(path, nn.Identity())
    elif op == "inside":
        put(unit.residual.branch, Then(get(unit.residual.branch), module))
    elif unit.residual.shortcut is not None:
        put(unit.residual.shortcut, ShortcutAttention(get(unit.residual.shortcut), module))
    elif not unit.residual.activated:
        put(unit.paths[0], ParallelAttention(get(unit.paths[0]), module))
    else:
        beside = unit.residual.beside.removeprefix(unit.paths[0] + ".")
        put(unit.paths[0], BesideIdentity(get(unit.paths[0]), beside, module))
