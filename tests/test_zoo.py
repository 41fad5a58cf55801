"""Every timm CNN family and every torchvision classification model, numbered automatically and counted.

The list is chosen by a rule, not by what passes (docs/numbering.md, "Any CNN"):
- timm: each module of :data:`TIMM_CNN_FAMILIES` (the timm modules whose networks are convolutional by their
  papers), its models in name order, the first :data:`PER_FAMILY` of them;
- torchvision: every name of ``torchvision.models.list_models(module=torchvision.models)``;
- transformers: the first two models of each module of :data:`TIMM_TRANSFORMER_FAMILIES`, which must be
  refused by the rule (no block sequence).

For each model that is numbered: its vanilla parameters and multiply-adds equal the library model's; one SE
module at a legal position of each op changes them by exactly the module's own (minus what it substitutes);
the first model of each family, if under :data:`REAL_FORWARD_PARAMS`, is also built on the CPU (its counts
those of the meta-device build) and run forward with its modules placed. A model that is refused must be
refused for one of :data:`DOCUMENTED_REFUSALS`. The counts at the end say how many were numbered.
"""

from __future__ import annotations

import functools
import warnings

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from nas_attn.arch import Arch, Placement  # noqa: E402
from nas_attn.backbones.nets.auto import library_model, meta_model  # noqa: E402
from nas_attn.build import build_model  # noqa: E402
from nas_attn.complexity import complexity, count_flops, count_params  # noqa: E402
from nas_attn.errors import ArchError  # noqa: E402
from nas_attn.modules import create  # noqa: E402

TIMM_CNN_FAMILIES = (
    "byobnet", "convmixer", "convnext", "cspnet", "densenet", "dla", "dpn", "efficientnet", "fasternet", "ghostnet",
    "hardcorenas", "hgnet", "hrnet", "inception_resnet_v2", "inception_v3", "inception_v4", "lcnetv2", "mambaout",
    "mobilenetv3", "nasnet", "nfnet", "pnasnet", "rdnet", "regnet", "repghost", "repvit", "res2net", "resnest",
    "resnet", "resnetv2", "rexnet", "selecsls", "senet", "sknet", "starnet", "tresnet", "vgg", "vovnet", "xception",
    "xception_aligned", "inception_next", "cspnext", "mobilenetv5", "efficientvit_mit", "edgenext",
)
#: pure transformer and MLP families (no convolution in their blocks; hybrids such as PVTv2, whose blocks hold
#: depthwise convolutions on channels-first maps, are numbered like CNNs)
TIMM_TRANSFORMER_FAMILIES = ("vision_transformer", "swin_transformer", "deit", "beit", "cait", "mlp_mixer")
PER_FAMILY = 7
#: why a model may be refused (the rule of docs/numbering.md), as the message says it
DOCUMENTED_REFUSALS = ("no block sequence", "its forward pass at")
MODULE = "se"
#: the first model of each family is also built for real and run, when it is smaller than this
REAL_FORWARD_PARAMS = 15_000_000


def timm_models() -> list[str]:
    return [f"timm:{n}" for fam in TIMM_CNN_FAMILIES for n in sorted(timm.list_models(module=fam))[:PER_FAMILY]]


def torchvision_models() -> list[str]:
    return [f"torchvision:{n}" for n in torchvision.models.list_models(module=torchvision.models)]


def first_of_each_family() -> set[str]:
    firsts = {f"timm:{n}" for fam in TIMM_CNN_FAMILIES for n in sorted(timm.list_models(module=fam))[:1]}
    return firsts | {name for name in torchvision_models() if name.endswith(("18", "_t", "0_5", "v2", "_b0", "_400mf",
                                                                                  "1_0", "11", "alexnet", "googlenet"))}


RESULTS: dict[str, str] = {}
FIRSTS = first_of_each_family()


def input_size(name: str) -> int:
    if name.startswith("timm:"):
        return int(timm.get_pretrained_cfg(name[5:]).input_size[-1]) if timm.get_pretrained_cfg(name[5:]) else 224
    return 299 if name.endswith("inception_v3") else 224


@functools.cache
def library_counts(name: str, size: int) -> tuple[int, int]:
    model = meta_model(name, 10, 3, {})
    return count_params(model), count_flops(model, (1, 3, size, size))


def module_counts(channels: int, side: int) -> tuple[int, int]:
    with torch.device("meta"):
        m = create(MODULE, channels)
    return count_params(m), count_flops(m, (1, channels, side, side))


def unit_counts(name: str, size: int, paths: list[str]) -> tuple[int, int]:
    model = meta_model(name, 10, 3, {})
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size, device="meta"))
    by_module = counter.get_flop_counts()
    prefix = type(model).__name__
    params = sum(count_params(model.get_submodule(p)) for p in paths)
    return params, sum(sum(by_module.get(f"{prefix}.{p}", {}).values()) for p in paths) // 2


def one_per_op(arch: Arch) -> list[Placement]:
    """SE at the middle legal position of each op, at distinct positions."""
    positions = arch.positions()
    used: set[int] = set()
    placements = []
    for op in ("substitute", "inside", "parallel", "insert"):
        legal = [p.index for p in positions if op in p.ops and p.index not in used]
        if legal:
            used.add(legal[len(legal) // 2])
            placements.append(Placement(legal[len(legal) // 2], MODULE, op))
    return placements


@pytest.mark.parametrize("name", timm_models() + torchvision_models())
def test_a_library_cnn_is_numbered_and_counted_exactly_or_refused_by_the_rule(name):
    size = input_size(name)
    arch = Arch(name, num_classes=10, input_size=size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            positions = arch.positions()
        except ArchError as exc:
            assert str(exc).startswith(f"backbone {name}: "), exc
            assert any(r in str(exc) for r in DOCUMENTED_REFUSALS), exc
            RESULTS[name] = "refused"
            return
        assert len(positions) >= 2 and [p.index for p in positions] == list(range(1, len(positions) + 1))
        assert complexity(arch) == dict(zip(("params", "flops"), library_counts(name, size), strict=True))
        placed = one_per_op(arch)
        by_index = {p.index: p for p in positions}
        expected_params, expected_flops = library_counts(name, size)
        for pl in placed:
            pos = by_index[pl.position]
            p, f = module_counts(pos.out_channels, pos.side)
            expected_params, expected_flops = expected_params + p, expected_flops + f
        substituted = [pl for pl in placed if pl.op == "substitute"]
        if substituted:
            from nas_attn.backbones.nets.auto import numbering
            unit = numbering(name, size, 3, {})[substituted[0].position - 1]
            p, f = unit_counts(name, size, list(unit.paths))
            expected_params, expected_flops = expected_params - p, expected_flops - f
        with_modules = Arch(name, num_classes=10, input_size=size, placements=placed)
        assert complexity(with_modules) == {"params": expected_params, "flops": expected_flops}, placed
        if name in FIRSTS and expected_params < REAL_FORWARD_PARAMS:
            real = library_model(name, 10, 3, {})  # built on the CPU, as the library builds it: not on meta
            assert (count_params(real), count_flops(real, (1, 3, size, size))) == library_counts(name, size)
            torch.manual_seed(0)
            out = build_model(with_modules).eval()(torch.randn(1, 3, size, size))
            assert out.shape == (1, 10) and torch.isfinite(out).all()
    RESULTS[name] = f"numbered {len(positions)} ({', '.join(sorted({pl.op for pl in placed}))})"


@pytest.mark.parametrize("name", [f"timm:{n}" for fam in TIMM_TRANSFORMER_FAMILIES
                                  for n in sorted(timm.list_models(module=fam))[:2]])
def test_a_vision_transformer_is_refused_in_one_line(name):
    with pytest.raises(ArchError, match="no block sequence") as info:
        Arch(name, num_classes=10, input_size=input_size(name)).positions()
    assert "\n" not in str(info.value)


def test_the_zoo_counts():
    """Run after the walk above (same module, in file order): how many were numbered, from how many families."""
    if len(RESULTS) < len(timm_models()) + len(torchvision_models()):
        pytest.skip("the zoo walk did not run in full in this session")
    numbered = [n for n, r in RESULTS.items() if r.startswith("numbered")]
    timm_numbered = [n for n in numbered if n.startswith("timm:")]
    families = {fam for fam in TIMM_CNN_FAMILIES
                if any(f"timm:{n}" in timm_numbered for n in timm.list_models(module=fam))}
    refused = sorted(n for n, r in RESULTS.items() if r == "refused")
    print(f"zoo: {len(numbered)} numbered ({len(timm_numbered)} timm from {len(families)} families), "
          f"refused: {', '.join(refused)}")
    assert len(timm_numbered) >= 200 and len(families) >= 40, (len(timm_numbered), len(families))
    tv_refused = sorted(n for n in RESULTS if n.startswith("torchvision:") and RESULTS[n] == "refused")
    assert all(n.split(":")[1].startswith(("vit_", "swin_")) for n in tv_refused), tv_refused
    ops = {op for r in RESULTS.values() for op in ("insert", "substitute", "inside", "parallel") if op in r}
    assert ops == {"insert", "substitute", "inside", "parallel"}
