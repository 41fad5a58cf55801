import json

import pytest

from nas_attn import Arch, ArchError, Placement, build_model, complexity
from nas_attn.backbones import get_backbone

SMALL = 32  # small input: fast, and CSM (<= 1024 positions) is legal everywhere


def _arch(backbone, placements=(), **kw):
    kw = {"num_classes": 10, "input_size": SMALL, "small_input": True, **kw}
    return Arch(backbone, placements=list(placements), **kw)


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


def test_build_ops_place_modules_where_the_docs_say():
    m = build_model(_arch("mobilenetv2", [Placement(14, "ulsam", "substitute", 4), Placement(14, "se", "insert"),
                                          Placement(9, "eca", "inside"), Placement(10, "la", "parallel")]))
    assert type(m.layers[13]).__name__ == "InsertAfter" and type(m.layers[13].layer).__name__ == "ULSAM"
    assert type(m.layers[8].conv[-1]).__name__ == "EcaModule"
    assert type(m.layers[9]).__name__ == "ParallelAttention" and type(m.layers[9].attention).__name__ == "LightAttention"
    r = build_model(_arch("resnet50", [Placement(3, "se", "inside"), Placement(4, "cbam", "parallel")]))
    assert type(r.layers[2].se).__name__ == "SEModule"  # timm's SE-ResNet slot: after bn3, before the addition
    assert type(r.layers[3].downsample).__name__ == "ShortcutAttention"
    w = build_model(_arch("wrn16_8", [Placement(1, "se", "parallel"), Placement(2, "se", "parallel"),
                                      Placement(2, "eca", "insert")]))
    assert type(w.layers[0].downsample).__name__ == "ShortcutAttention"  # 16 -> 128: a projection shortcut
    assert type(w.layers[1].layer).__name__ == "ParallelAttention"  # identity shortcut, inserted after


def test_json_round_trip(tmp_path):
    arch = Arch("mobilenetv2", width=0.75, num_classes=10, input_size=32, in_chans=1, small_input=True,
                placements=[Placement(14, "ulsam", "substitute", 4), Placement(17, "lgam", "insert", 2, {"reduction": 4})])
    assert Arch.from_json(arch.to_json()) == arch
    v1 = Arch("resnet50", variant="v1", placements=[Placement(4, "la", "parallel"), Placement(5, "csm", "inside",
                                                                                            args={"order": "spatial-first"})])
    assert Arch.from_json(v1.to_json()) == v1 and list(v1.to_dict())[:2] == ["backbone", "variant"]
    assert "variant" not in Arch("resnet50").to_dict()  # written only when set
    assert v1.short() == "4:la/par, 5:csm/in"
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
        ({"backbone": "resnet18", "placements": [{"position": 1, "module": "nonlocal"}]},
         r"placement 1 \(1:1 nonlocal\): nonlocal at a 56x56 map has 3136 positions, over its limit of 1024"),
        ({"backbone": "resnet18", "placements": [{"position": 1, "module": "csm", "args": {"colour": 1}}]},
         r"placement 1 .*unknown option\(s\) colour \(takes reduction, key_reduction, order\)"),
        ({"backbone": "resnet18", "placements": [{"position": 8, "module": "csm", "args": {"order": "sideways"}}]},
         r"placement 1 \(8:1 csm\): module 'csm': order must be one of channel-first, spatial-first, got 'sideways'"),
        ({"backbone": "mobilenetv1", "placements": [{"position": 8, "module": "se", "op": "parallel"}]},
         "has no residual branch"),
        ({"backbone": "resnet18", "placements": [{"position": 3, "module": "se", "op": "inside"},
                                                 {"position": 3, "module": "la", "op": "parallel"}]}, "collides"),
        ({"backbone": "resnet50", "variant": "v3"}, "unknown variant 'v3' for resnet50"),
        ({"backbone": "densenet_bc100", "width": 0.5}, "no width multiplier"),
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
