"""Every backbone family: numbering against the built model, reference parameter counts, every legal
(position, op, module) counted and trained, illegal ones refused."""

import functools
import math

import pytest
import torch
import torchvision

from nas_attn import Arch, ArchError, Placement, build_model, complexity
from nas_attn.backbones import OPS, get_backbone, list_backbones
from nas_attn.complexity import count_flops, count_params
from nas_attn.errors import ModuleConfigError
from nas_attn.modules import create, get_entry, list_modules
from nas_attn.space.schema import SearchSection

SMALL = 32  # small input: csm, sam and nonlocal (<= 1024 positions) are legal everywhere
#: the groups a search offers by default; with a module's own default, the groups a module may be given
SPACE_GROUPS = tuple(SearchSection.model_fields["groups"].default)
#: no convolution, linear layer or matrix product: 0 multiply-adds by the papers' convention
ELEMENTWISE = {"sge"}
#: modules whose attention is (h*w)x(h*w): refused over their max_positions
CAPPED = [m for m in list_modules() if get_entry(m).max_positions]


def _arch(backbone, placements=(), size=SMALL, **kw):
    kw = {"num_classes": 10, "input_size": size, "small_input": True, **kw}
    return Arch(backbone, placements=list(placements), **kw)


def _groups(module, channels):
    """The largest groups the module may be given that divide ``channels``; ``None`` if it takes none."""
    entry = get_entry(module)
    if not entry.takes_groups:
        return None
    return max(g for g in {*SPACE_GROUPS, entry.default_groups} if channels % g == 0)


@functools.cache
def _positions(backbone, size=SMALL):
    return _arch(backbone, size=size).positions()


@functools.cache
def _vanilla(backbone):
    """Params and flops of the vanilla model, and ``{position: (params, flops)}`` of each layer that may be
    substituted (stride 1, as many channels out as in: its input is its output's shape), on the meta device."""
    arch = _arch(backbone)
    with torch.device("meta"):
        net = build_model(arch)
    layers = {p.index: (count_params(net.layers[p.index - 1]),
                        count_flops(net.layers[p.index - 1], (1, p.in_channels, p.side, p.side)))
              for p in arch.positions() if p.substitutable}
    return complexity(arch), layers


@functools.cache
def _module_cost(module, channels, side, groups):
    """Params and flops of the module alone at a (channels, side x side) map, on the meta device."""
    with torch.device("meta"):
        mod = create(module, channels, groups)
    return count_params(mod), count_flops(mod, (1, channels, side, side))


def _rotation(positions, modules):
    """``modules`` cycled over ``positions``: as many models as it takes for every module to appear, every
    position filled in each."""
    rounds = -(-len(modules) // len(positions))
    return [[modules[(r * len(positions) + i) % len(modules)] for i in range(len(positions))] for r in range(rounds)]


@functools.cache
def _sample(backbone):
    """``(op, modules)`` whole models of the backbone: for each op, every position where it is legal filled with
    the modules cycled on from where the previous op left off; repeated until every module has been placed."""
    modules = list_modules()
    slots = [(op, [p for p in _positions(backbone) if op in p.ops]) for op in OPS]
    models, placed = [], 0
    while placed < len(modules):
        for op, ps in (s for s in slots if s[1]):
            models.append((op, [modules[(placed + i) % len(modules)] for i in range(len(ps))]))
            placed += len(ps)
    return models


def _default_groups_if_legal(module, channels):
    """``None`` (the module's default groups) where they divide the channels, else the largest that do."""
    default = get_entry(module).default_groups
    return None if default is None or channels % default == 0 else _groups(module, channels)


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_module_is_counted_at_every_legal_position_and_op(backbone):
    """Every (position, op, module): the placement is legal, and the module alone, on the meta device at the map
    every op gives it there (the layer's output shape: ``test_every_module_with_every_op_trains_a_step`` reads
    it by hooks), with the largest groups dividing the channels, has parameters and multiply-adds (none for
    element-wise sge). That a whole model adds exactly these counts is checked on a sample below."""
    for p in _positions(backbone):
        for op, m in ((op, m) for op in p.ops for m in list_modules()):
            groups = _groups(m, p.out_channels)
            _arch(backbone, [Placement(p.index, m, op, groups)]).validate()
            params, flops = _module_cost(m, p.out_channels, p.side, groups)
            assert params > 0 and (flops > 0) is (m not in ELEMENTWISE), (p, op, m)
            _check_default_groups(backbone, p, op, m)


def _check_default_groups(backbone, p, op, module):
    """A module's default groups at ``p``: counted, or refused as an ArchError naming the placement."""
    default = get_entry(module).default_groups
    if default is None:
        return
    arch = _arch(backbone, [Placement(p.index, module, op)])
    try:
        arch.validate()
        _module_cost(module, p.out_channels, p.side, default)
    except (ArchError, ModuleConfigError):  # refused: complexity() says so in one line naming the placement
        with pytest.raises(ArchError, match=rf"^placement 1 \({p.index}:[^\n]*$"):
            complexity(arch)


@pytest.mark.parametrize("backbone", list_backbones())
def test_quadratic_modules_are_refused_over_their_cap_and_counted_under(backbone):
    """At 64 px the first maps are 64x64 = 4096 positions: over the 1024 of csm, sam and nonlocal, refused in
    one line naming the placement (before anything is built); counted everywhere else."""
    size, refused = 2 * SMALL, 0
    for p in _positions(backbone, size):
        for op, m in ((op, m) for op in p.ops for m in CAPPED):
            arch = _arch(backbone, [Placement(p.index, m, op)], size=size)
            if p.side ** 2 <= get_entry(m).max_positions:
                arch.validate()
                assert min(_module_cost(m, p.out_channels, p.side, None)) > 0, (p, op, m)
                continue
            with pytest.raises(ArchError, match=rf"^placement 1 \({p.index}:[^\n]* over its limit of \d+"):
                complexity(arch)
            refused += 1
    assert refused


def _cases():
    for b in list_backbones():
        for op in OPS:
            if any(op in p.ops for p in _positions(b)):
                yield b, op


@pytest.mark.parametrize("backbone,op", list(_cases()))
def test_complexity_of_every_module_with_every_op_adds_up(backbone, op):
    """complexity() of the backbone with modules at every position where ``op`` is legal (the sample: each module
    in some whole model of every backbone, default groups where legal) is the vanilla figure plus each module's
    own cost at its position, minus each substituted layer's: exactly."""
    positions = [p for p in _positions(backbone) if op in p.ops]
    vanilla, layers = _vanilla(backbone)
    for chosen in (modules for op_, modules in _sample(backbone) if op_ == op):
        placements = [Placement(p.index, m, op, _default_groups_if_legal(m, p.out_channels))
                      for p, m in zip(positions, chosen, strict=True)]
        cost = complexity(_arch(backbone, placements))
        expected = dict(vanilla)
        for p, pl in zip(positions, placements, strict=True):
            groups = pl.groups or get_entry(pl.module).default_groups
            params, flops = _module_cost(pl.module, p.out_channels, p.side, groups)
            removed = layers[p.index] if op == "substitute" else (0, 0)
            expected["params"] += params - removed[0]
            expected["flops"] += flops - removed[1]
        assert cost == expected, chosen


@functools.cache
def _train_size(backbone):
    """The smallest input side (from 16) at which every map is at least 2x2, where attention is not trivial
    (a softmax over one position is constant)."""
    size = 16
    while min(p.side for p in _positions(backbone, size) if p.ops) < 2:
        size *= 2
    return size


@pytest.mark.parametrize("backbone,op", list(_cases()))
def test_every_module_with_every_op_trains_a_step(backbone, op):
    """A real forward + backward + SGD step with the modules cycled over the positions where ``op`` is legal,
    as many models as it takes for every module to appear."""
    size = _train_size(backbone)
    positions = [p.index for p in _positions(backbone, size) if op in p.ops]
    for chosen in _rotation(positions, list_modules()):
        arch = _arch(backbone, [Placement(k, m, op, _train_groups(m)) for k, m in zip(positions, chosen, strict=True)],
                     size=size)
        _train_step(arch, sorted(set(chosen)))


def _train_groups(module):
    """2 divides every map's channels; which groups is the counting tests' concern, gradients are this one's."""
    return 2 if get_entry(module).takes_groups else None


def _train_step(arch, modules):
    torch.manual_seed(0)
    model = build_model(arch).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, arch.in_chans, arch.input_size, arch.input_size)
    received = {}  # what each placed module is given: the shape the counting tests count it at
    for pl, mod in model.placed:
        mod.register_forward_pre_hook(lambda m, inp, k=pl.position: received.__setitem__(k, tuple(inp[0].shape[1:])))
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    shapes = {p.index: (p.out_channels, p.side, p.side) for p in arch.positions()}
    assert received == {pl.position: shapes[pl.position] for pl in arch.placements}
    loss.backward()
    assert torch.isfinite(loss)
    with torch.device("meta"):
        kinds = {m: type(create(m, 16, _train_groups(m))) for m in modules}
    for m, kind in kinds.items():  # every placed module takes part: finite gradients, not all zero
        found = [mod for mod in model.modules() if type(mod) is kind]
        grads = [p.grad for mod in found for p in mod.parameters()]
        assert found and all(g is not None and torch.isfinite(g).all() for g in grads), m
        assert not grads or any(g.abs().sum() > 0 for g in grads), m
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_illegal_op_raises_naming_the_placement(backbone):
    positions = _positions(backbone)
    illegal = [(p, op) for p in positions for op in OPS if op not in p.ops]
    assert illegal
    for p, op in illegal:
        with pytest.raises(ArchError, match=rf"placement 1 \({p.index}:"):
            _arch(backbone, [Placement(p.index, "se", op)]).validate()


@pytest.mark.parametrize("backbone", list_backbones())
@pytest.mark.parametrize("small_input,size,in_chans", [(True, SMALL, 1), (False, 224, 3)])
def test_positions_match_the_built_model(backbone, small_input, size, in_chans):
    """Channels and output side of every position, read by hooks from a model built on the meta device."""
    _check_positions(Arch(backbone, num_classes=10, input_size=size, small_input=small_input, in_chans=in_chans))


@pytest.mark.parametrize("backbone", [b for b in list_backbones() if get_backbone(b).has_width])
@pytest.mark.parametrize("width", [0.5, 1.5])
def test_positions_match_the_built_model_at_other_widths(backbone, width):
    """A width other than 1 (a ResNet's stem keeps 64 channels, so its first block then projects: no
    substitute there)."""
    _check_positions(Arch(backbone, num_classes=10, input_size=SMALL, small_input=True, in_chans=1, width=width))


def _check_positions(arch: Arch) -> None:
    size, in_chans = arch.input_size, arch.in_chans
    with torch.device("meta"):
        model = build_model(arch).eval()
        seen = {}
        for i, layer in enumerate(model.layers, 1):
            layer.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, (inp[0].shape, out.shape)))
        model(torch.zeros(1, in_chans, size, size))
    for p in arch.positions():
        if p.ops:
            (_, cin, hin, _), (_, cout, h, w) = seen[p.index]
            assert (cin, cout, h, w) == (p.in_channels, p.out_channels, p.side, p.side), p
            assert p.stride == round(hin / h), p


# torchvision's own models, counted on the meta device: our families must have exactly their parameters
TORCHVISION = ["resnet18", "resnet34", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "densenet121"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_params_equal_torchvision(name):
    with torch.device("meta"):
        reference = count_params(getattr(torchvision.models, name)())
    assert complexity(Arch(name))["params"] == reference


@pytest.mark.parametrize("name,num_classes,params", [
    ("drn_a_50", 1000, 25_557_032),  # fyu/drn drn.py, 1000 classes (README: 25.6M)
    ("drn_c_26", 1000, 21_126_584),  # README: 21.1M
    ("drn_d_22", 1000, 16_393_752),  # README: 16.4M
    ("wrn16_8", 10, 10_961_370),
    ("wrn16_10", 10, 17_116_634),
    ("wrn28_10", 10, 36_479_194),  # Zagoruyko & Komodakis Table 1: 36.5M
])
def test_params_equal_the_reference_implementations(name, num_classes, params):
    assert complexity(Arch(name, num_classes=num_classes, input_size=32))["params"] == params


@pytest.mark.parametrize("name,params,paper_m", [
    ("resnext29_8x64d", 34_426_698, 34.4),  # Xie et al. Table 7: 34.4M (CIFAR-10), rounded
    ("densenet_bc100", 769_162, 0.8),  # Huang et al. Table 2: 0.8M (DenseNet-BC, L=100, k=12), rounded
    ("resnext29_32x4d", 4_775_754, None),  # no published figure: a regression value only
])
def test_params_pinned_where_the_papers_round_or_say_nothing(name, params, paper_m):
    """The papers give rounded figures or none, so the exact counts (10 classes) are our own, pinned so that a
    change of layout shows; the rounded ones must still print as the papers'."""
    counted = complexity(Arch(name, num_classes=10, input_size=32))["params"]
    assert counted == params
    assert paper_m is None or round(counted / 1e6, 1) == paper_m


def test_resnet50_v1_strides_the_first_conv():
    v15, v1 = complexity(Arch("resnet50")), complexity(Arch("resnet50", variant="v1"))
    assert v1["params"] == v15["params"] == 25_557_032
    assert v15["flops"] == 4_089_184_256 and v1["flops"] == 3_857_973_248  # the papers' "3.86 GFLOPs"
    block = build_model(Arch("resnet50", variant="v1")).layers[3]  # first block of stage 2
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert build_model(Arch("resnet50")).layers[3].conv2.stride == (2, 2)


def test_width_scales_every_stage():
    """CSM's WideResNet18 (widen 1.5): stages x 1.5 (the stem keeps 64), about 2.25x the parameters."""
    pos = Arch("resnet18", width=1.5).positions()
    assert [p.out_channels for p in pos] == [96, 96, 192, 192, 384, 384, 768, 768]
    wide, base = complexity(Arch("resnet18", width=1.5))["params"], complexity(Arch("resnet18"))["params"]
    assert math.isclose(wide / base, 2.25, rel_tol=0.02)


def test_drn_width_scales_every_level():
    assert [p.out_channels for p in Arch("drn_d_22", width=0.5).positions()] == [8, 16] + [32] * 2 + [64] * 2 + \
        [128] * 2 + [256] * 4
    half = complexity(Arch("drn_c_26", width=0.5, num_classes=10, input_size=32))["params"]
    assert math.isclose(half / complexity(Arch("drn_c_26", num_classes=10, input_size=32))["params"], 0.25, rel_tol=0.02)


def test_drn_dilation_and_resolution():
    """DRN-A-50: output stride 8, the first block of each dilated stage undilated (the authors' drn.py)."""
    pos = Arch("drn_a_50").positions()
    assert [p.side for p in pos][-1] == 28 and [p.stride for p in pos[7:]] == [1] * 9
    net = build_model(Arch("drn_a_50"))
    assert [b.conv2.dilation[0] for b in net.layers[7:]] == [1, 2, 2, 2, 2, 2, 1, 4, 4]
    c26 = build_model(Arch("drn_c_26"))
    assert [type(b).__name__ for b in c26.layers[10:]] == ["Sequential", "Sequential"]  # levels 7-8, no skip
    assert [p.ops for p in Arch("drn_d_22").positions()][:2] == [("insert",), ("insert",)]


def test_densenet_numbering():
    pos = Arch("densenet121").positions()
    assert len(pos) == 58 + 3 and [p.index for p in pos if p.kind == "transition"] == [7, 20, 45]
    assert pos[0].out_channels == 64 + 32 and pos[-1].out_channels == 1024 and pos[-1].side == 7
    assert all(p.ops == ("insert",) for p in pos)
    bc = Arch("densenet_bc100", input_size=32).positions()
    assert len(bc) == 50 and bc[-1].out_channels == 342


def test_cifar_networks_ignore_small_input():
    for name in ("wrn16_8", "resnext29_32x4d", "densenet_bc100", "drn_d_22"):
        a, b = Arch(name, input_size=32), Arch(name, input_size=32, small_input=True)
        assert a.positions() == b.positions() and complexity(a) == complexity(b)


def test_families_declare_width_and_variants():
    assert {b for b in list_backbones() if get_backbone(b).has_width} == {
        "mobilenetv2", "mobilenetv1", "resnet18", "resnet34", "resnet50", "drn_a_50", "drn_c_26", "drn_d_22",
        "wrn16_8", "wrn16_10", "wrn28_10"}
    # a WRN's width scales its widening factor: WRN-16-10 at 0.2 is WRN-16-2 (channels 32, 64, 128)
    thin = Arch("wrn16_10", width=0.2, num_classes=10, input_size=32)
    assert [p.out_channels for p in thin.positions()] == [32, 32, 64, 64, 128, 128]
    assert complexity(thin)["params"] == 691_674
    with pytest.raises(ArchError, match="unknown variant 'v2' for resnet50"):
        Arch("resnet50", variant="v2").validate()
    with pytest.raises(ArchError, match="unknown variant 'v1' for resnet18"):
        Arch("resnet18", variant="v1").validate()
    with pytest.raises(ArchError, match="resnext29_8x64d has no width multiplier"):
        Arch("resnext29_8x64d", width=2.0).validate()
