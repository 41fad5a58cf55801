import json

import pytest
import torch

from nas_attn import Arch, ArchError, Placement, build_model, complexity
from nas_attn.backbones import OPS, get_backbone, list_backbones
from nas_attn.modules import get_entry, list_modules

SMALL = 32  # small input: fast, and CSM (<= 1024 positions) is legal everywhere


def _arch(backbone, placements=(), **kw):
    kw = {"num_classes": 10, "input_size": SMALL, "small_input": True, **kw}
    return Arch(backbone, placements=list(placements), **kw)


def _combos():
    for b in list_backbones():
        for op in OPS:
            for module in list_modules():
                yield b, op, module


@pytest.mark.parametrize("backbone,op,module", list(_combos()))
def test_every_legal_combination_builds_and_runs(backbone, op, module):
    """One model per (backbone, op, module) with the module at EVERY position where that op is legal."""
    positions = [p for p in _arch(backbone).positions() if op in p.ops]
    if not positions:
        pytest.skip(f"{backbone} has no position where {op} is legal")
    g = 2 if get_entry(module).takes_groups else None
    arch = _arch(backbone, [Placement(p.index, module, op, g) for p in positions])
    model = build_model(arch)
    y = model(torch.randn(2, 3, SMALL, SMALL))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_illegal_op_raises(backbone):
    positions = _arch(backbone).positions()
    illegal = [(p, op) for p in positions for op in OPS if op not in p.ops]
    assert illegal
    for p, op in illegal:
        with pytest.raises(ArchError, match=rf"placement 1 \({p.index}:"):
            _arch(backbone, [Placement(p.index, "se", op)]).validate()


@pytest.mark.parametrize("backbone", list_backbones())
@pytest.mark.parametrize("small_input,size", [(True, 32), (False, 64)])
def test_positions_match_the_built_model(backbone, small_input, size):
    arch = Arch(backbone, num_classes=10, input_size=size, small_input=small_input, in_chans=1)
    model = build_model(arch).eval()
    seen = {}
    for i, layer in enumerate(model.layers, 1):
        layer.register_forward_hook(lambda m, inp, out, i=i: seen.__setitem__(i, (inp[0].shape, out.shape)))
    model(torch.zeros(1, 1, size, size))
    for p in arch.positions():
        if not p.ops:
            continue
        (_, cin, _, _), (_, cout, h, w) = seen[p.index]
        assert (cin, cout, h, w) == (p.in_channels, p.out_channels, p.side, p.side), p


def test_spec_layer_numbering():
    pos = {p.index: p for p in Arch("mobilenetv2").positions()}
    assert [i for i, p in pos.items() if p.substitutable] == [4, 6, 7, 9, 10, 11, 13, 14, 16, 17]
    assert (pos[14].in_channels, pos[14].side, pos[17].out_channels, pos[17].side) == (96, 14, 160, 7)
    assert pos[20].ops == ()
    v1 = {p.index: p for p in Arch("mobilenetv1").positions()}
    assert [i for i, p in v1.items() if p.substitutable] == [4, 6, 8, 9, 10, 11, 12, 14]
    assert all("inside" not in p.ops for p in v1.values())
    r18 = Arch("resnet18").positions()
    assert len(r18) == 8 and all("inside" in p.ops for p in r18)
    assert [p.index for p in r18 if p.substitutable] == [1, 2, 4, 6, 8]
    assert len(Arch("resnet34").positions()) == len(Arch("resnet50").positions()) == 16
    small = {p.index: p for p in Arch("mobilenetv2", input_size=32, small_input=True).positions()}
    assert small[1].stride == small[3].stride == 1 and small[17].side == 4


def test_build_ops_place_modules_where_the_spec_says():
    m = build_model(_arch("mobilenetv2", [Placement(14, "ulsam", "substitute", 4), Placement(14, "se", "insert"),
                                          Placement(9, "eca", "inside")]))
    assert type(m.layers[13]).__name__ == "InsertAfter" and type(m.layers[13].layer).__name__ == "ULSAM"
    assert type(m.layers[8].conv[-1]).__name__ == "EcaModule"
    r = build_model(_arch("resnet50", [Placement(3, "se", "inside")]))
    assert type(r.layers[2].bn3[1]).__name__ == "SEModule"


def test_json_round_trip(tmp_path):
    arch = Arch("mobilenetv2", width=0.75, num_classes=10, input_size=32, in_chans=1, small_input=True,
                placements=[Placement(14, "ulsam", "substitute", 4), Placement(17, "lgam", "insert", 2, {"reduction": 4})])
    assert Arch.from_json(arch.to_json()) == arch
    f = tmp_path / "a.json"
    f.write_text(arch.to_json(indent=2))
    assert Arch.from_json(str(f)) == arch
    assert arch.short() == "14:ulsam/g4/sub, 17:1 lgam/g2"
    spec = json.loads('{"backbone": "mobilenetv2", "width": 1.0, "num_classes": 1000, "input_size": 224, '
                      '"in_chans": 3, "small_input": false, "placements": [{"position": 14, "op": "substitute", '
                      '"module": "ulsam", "groups": 4}, {"position": 17, "op": "insert", "module": "ulsam", "groups": 4}]}')
    assert Arch.from_dict(spec).to_dict() == spec


@pytest.mark.parametrize(
    "arch,message",
    [
        ({"backbone": "mobilenetv2", "colour": 1}, "unknown key"),
        ({"backbone": "vgg"}, "unknown backbone 'vgg'"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 14, "module": "foo"}]}, r"placement 1 .*unknown attention module 'foo'"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 21, "module": "se"}]}, r"placement 1 .*position 21 out of range"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 20, "module": "se"}]}, r"position 20 out of range"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 8, "module": "se", "op": "substitute"}]}, "is not substitutable"),
        ({"backbone": "mobilenetv1", "placements": [{"position": 8, "module": "se", "op": "inside"}]}, "has no residual branch"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 14, "module": "ulsam", "groups": 5}]}, "groups=5 do not divide 96"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 14, "module": "ulsam", "op": "flip"}]}, "unknown op 'flip'"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 14, "module": "se"}, {"position": 14, "module": "eca"}]},
         r"placement 2 \(14:1 eca\): collides with placement 1"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 14, "module": "se", "op": "substitute"},
                                                    {"position": 14, "module": "eca", "op": "inside"}]}, "collides"),
        ({"backbone": "mobilenetv2", "placements": [{"position": 4, "module": "csm"}]}, "over its limit of 1024"),
        ({"backbone": "resnet18", "width": 0.5}, "no width multiplier"),
        ({"backbone": "mobilenetv2", "input_size": "big"}, "input_size must be an integer"),
        ({"backbone": "mobilenetv2", "placements": [{"module": "se"}]}, "missing key"),
    ],
)
def test_invalid_archs(arch, message):
    with pytest.raises(ArchError, match=message):
        build_model(Arch.from_dict(arch))


def test_spec_reference_figures():
    vanilla = complexity(Arch("mobilenetv2"))
    assert vanilla["params"] == 3_504_872
    assert abs(vanilla["flops"] - 300.77e6) / 300.77e6 < 1e-3
    sub = complexity(Arch("mobilenetv2", placements=[Placement(14, "ulsam", "substitute", 4),
                                                     Placement(17, "ulsam", "substitute", 4)]))
    assert vanilla["params"] - sub["params"] == 437_760  # "vanilla - 437.8K"
    assert abs((vanilla["flops"] - sub["flops"]) - 38.11e6) / 38.11e6 < 1e-3
    ins = complexity(Arch("mobilenetv2", placements=[Placement(17, "ulsam", "insert", 4)]))
    assert (ins["params"] - vanilla["params"], ins["flops"] - vanilla["flops"]) == (320, 15_680)
    v1 = complexity(Arch("mobilenetv1"))
    assert abs(v1["params"] - 4.2e6) / 4.2e6 < 0.01 and abs(v1["flops"] - 569e6) / 569e6 < 0.001


def test_complexity_matches_a_built_model_and_counts_csm_matrix_products():
    arch = _arch("resnet18", [Placement(8, "csm", "insert")])
    c = complexity(arch)
    model = build_model(arch)
    assert c["params"] == sum(p.numel() for p in model.parameters())
    base = complexity(_arch("resnet18"))["flops"]
    # at 4x4 (16 positions), 512 channels: B^T C is 16*16*64, D S^T is 512*16*16 multiply-adds
    assert c["flops"] - base >= 16 * 16 * 64 + 512 * 16 * 16


def test_family_lookup():
    assert get_backbone("resnet50").name == "resnet50"
    with pytest.raises(ArchError):
        get_backbone("nope")
