"""One forward pass of a model on the meta device, recorded: every module call and every tensor function.

What the automatic numbering (:mod:`nas_attn.backbones.nets.auto`) reads a model's structure from. Hand
written because neither torch.fx (it fails on data-dependent control flow, which many timm blocks have) nor
timm's ``feature_info`` (stage outputs only, and timm models only) gives the call order of every module with
the tensors flowing between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode


def tensors_in(value: object) -> list[torch.Tensor]:
    """The tensors of a call's arguments or result, lists and tuples flattened (a dense layer takes a list)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    return []


@dataclass
class Call:
    """A module's call: the ids of the tensors it took and gave (tensors are kept alive, so ids stay unique)."""

    path: str
    order: int
    inputs: tuple[int, ...] = ()
    in_shapes: tuple[tuple[int, ...], ...] = ()
    output: int | None = None
    out_shape: tuple[int, ...] | None = None
    out_is_tuple: bool = False
    times: int = 1
    #: how many tensor functions had run when the (first) call returned: a module whose call ended after an
    #: op cannot have made that op's operands (an in-place op after it keeps their ids)
    ended: int = -1


@dataclass
class Op:
    """A tensor function called inside some modules: its name, the tensors it took, the tensor it gave."""

    name: str
    inputs: tuple[int, ...]
    output: int
    within: tuple[str, ...]


@dataclass
class Trace:
    calls: dict[str, Call] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    makers: dict[int, list[str]] = field(default_factory=dict)  # tensor id → the modules that returned it
    stack: list[str] = field(default_factory=list)
    keep: list[torch.Tensor] = field(default_factory=list)


class _RecordOps(TorchFunctionMode):
    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.trace = trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = tensors_in(out)
        if not outs:  # ``x.shape``, ``x.dim()``: reads, not computation
            return out
        ins = tensors_in(args) + tensors_in(kwargs or {})
        self.trace.keep += ins + outs
        name = getattr(func, "__name__", str(func))
        self.trace.ops.append(Op(name, tuple(id(t) for t in ins), id(outs[0]), tuple(self.trace.stack)))
        return out


def record(model: nn.Module, example: torch.Tensor) -> Trace:
    """Run ``model(example)`` in eval mode with every call recorded (``example`` on the meta device)."""
    trace = Trace()
    names = {id(m): p for p, m in model.named_modules()}
    counter = [0]

    def before(module, args):
        path = names.get(id(module))
        if path is None:
            return
        call = trace.calls.get(path)
        if call is not None:
            call.times += 1
        else:
            ins = tensors_in(args)
            trace.keep += ins
            trace.calls[path] = Call(path, counter[0], tuple(id(t) for t in ins),
                                     tuple(tuple(t.shape) for t in ins))
            counter[0] += 1
        trace.stack.append(path)

    def after(module, args, output):
        path = names.get(id(module))
        if path is None:
            return
        trace.stack.pop()
        call = trace.calls[path]
        outs = tensors_in(output)
        if call.times == 1:
            call.ended = len(trace.ops)
        if call.times == 1 and outs:
            trace.keep += outs
            call.output, call.out_shape = id(outs[0]), tuple(outs[0].shape)
            call.out_is_tuple = not isinstance(output, torch.Tensor)
            trace.makers.setdefault(id(outs[0]), []).append(path)

    handles = [m.register_forward_pre_hook(before) for m in model.modules()]
    handles += [m.register_forward_hook(after) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _RecordOps(trace):
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return trace
