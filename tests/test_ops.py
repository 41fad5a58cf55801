"""Ops ``inside`` and ``parallel`` on every kind of residual block: where the module sits, exactly."""

import pytest
import torch
from torch import nn

from nas_attn import Arch, Placement, build_model

# (backbone, position): a block of every residual kind, with an identity and with a projection shortcut
BLOCKS = [
    ("resnet18", 2), ("resnet18", 3),  # timm BasicBlock: identity / projection shortcut
    ("resnet50", 1), ("resnet50", 2),  # timm Bottleneck: projection / identity
    ("wrn16_8", 1), ("wrn16_8", 2),  # timm PreActBasic: projection on the pre-activation / identity
    ("mobilenetv2", 4),  # torchvision InvertedResidual: identity, no activation after the addition
    ("drn_c_26", 5), ("drn_d_22", 3),  # DRN basic blocks (dilated / strided)
]


def _pair(backbone, position, op, module="se"):
    """The vanilla model and the same backbone weights with ``module`` placed at ``position`` by ``op`` (the
    backbone is built, from the same seed, before any module is created)."""
    arch = Arch(backbone, num_classes=10, input_size=16, small_input=True)
    torch.manual_seed(0)
    vanilla = build_model(arch).eval()
    torch.manual_seed(0)
    placed = build_model(Arch(**{**arch.__dict__, "placements": [Placement(position, module, op)]})).eval()
    assert sum(p.numel() for p in placed.parameters()) > sum(p.numel() for p in vanilla.parameters())
    return vanilla, placed


def _no_final_activation(block):
    for name in ("act2", "act3"):  # timm's activation after the skip addition
        if hasattr(block, name):
            setattr(block, name, nn.Identity())


def _block_input(model, position, x):
    x = model.stem(x)
    for layer in model.layers[:position - 1]:
        x = layer(x)
    return x


@pytest.mark.parametrize("backbone,position", BLOCKS)
def test_parallel_adds_the_module_of_the_shortcut_before_the_activation(backbone, position):
    """Before the block's final activation, parallel - vanilla = A(S(x)): the module reads the shortcut's output
    (x itself where the shortcut is the identity) and its output joins the branch and the shortcut."""
    vanilla, placed = _pair(backbone, position, "parallel")
    block, pblock = vanilla.layers[position - 1], placed.layers[position - 1]
    inner = getattr(pblock, "block", pblock)  # ParallelAttention wraps identity-shortcut blocks without an activation
    _no_final_activation(block)
    _no_final_activation(inner)
    x = _block_input(vanilla, position, torch.randn(2, 3, 16, 16))
    with torch.no_grad():
        if hasattr(pblock, "attention"):  # the whole block wrapped: A reads x
            attention, shortcut = pblock.attention, x
        else:  # the shortcut wrapped: A reads S(x)
            attention, shortcut = inner.downsample.attention, inner.downsample.shortcut(
                inner.norm1(x) if hasattr(inner, "norm1") else x)  # pre-activation blocks project norm1(x)
        torch.testing.assert_close(pblock(x) - block(x), attention(shortcut), atol=1e-5, rtol=1e-4)


def _shortcut(block, x):
    if getattr(block, "downsample", None) is None:
        return x
    return block.downsample(block.norm1(x) if hasattr(block, "norm1") else x)  # pre-activation: from norm1(x)


@pytest.mark.parametrize("backbone,position", BLOCKS)
def test_inside_puts_the_module_at_the_end_of_the_branch(backbone, position):
    """Before the final activation, vanilla = F(x) + S(x) and inside = A(F(x)) + S(x): the module reads the
    residual branch's output and its output replaces it before the skip addition."""
    vanilla, placed = _pair(backbone, position, "inside", "eca")
    block, pblock = vanilla.layers[position - 1], placed.layers[position - 1]
    _no_final_activation(block)
    _no_final_activation(pblock)
    seen = []
    eca = next(m for m in pblock.modules() if type(m).__name__ == "EcaModule")
    eca.register_forward_hook(lambda m, inp, out: seen.append((inp[0].clone(), out.clone())))  # added to in place
    x = _block_input(vanilla, position, torch.randn(2, 3, 16, 16))
    with torch.no_grad():
        out, branch = pblock(x), block(x) - _shortcut(block, x)
    (a_in, a_out), = seen
    torch.testing.assert_close(a_in, branch, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out, a_out + _shortcut(block, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("op", ["parallel", "inside", "insert"])
def test_a_placed_module_changes_the_output_and_receives_gradients(op):
    vanilla, placed = _pair("resnet18", 3, op, "la")
    x = torch.randn(2, 3, 16, 16)
    placed.train()
    out = placed(x)
    assert not torch.allclose(out, vanilla.train()(x))
    out.square().sum().backward()
    la = next(m for m in placed.modules() if type(m).__name__ == "LightAttention")
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in la.parameters())
