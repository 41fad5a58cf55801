"""Any CNN as a backbone: ``timm:``, ``torchvision:`` and ``py:`` names through the arch, the model, the export
and a whole search (docs/numbering.md, "Any CNN"). The zoo walk is tests/test_zoo.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from searchutil import REPO, env, only_run, search, write_space

from nas_attn.arch import Arch, Placement
from nas_attn.build import build_model
from nas_attn.complexity import complexity
from nas_attn.errors import ArchError
from nas_attn.export import export_model

USER = "py:user_cnn:small_cnn"
EVERY_OP = [Placement(2, "se", "inside"), Placement(3, "eca", "parallel"), Placement(4, "ulsam", "substitute", 4),
            Placement(4, "cbam", "insert"), Placement(2, "sge", "insert", 4)]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nas_attn", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env(), cwd=REPO)


@pytest.fixture(autouse=True)
def _user_module_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))


@pytest.mark.parametrize("backbone,placements", [
    ("timm:resnet18", [Placement(2, "se", "parallel"), Placement(4, "eca", "parallel"), Placement(3, "cbam", "inside"),
                       Placement(5, "ulsam", "substitute", 4), Placement(9, "se", "insert")]),
    ("torchvision:mobilenet_v2", [Placement(4, "se", "inside"), Placement(6, "eca", "parallel"),
                                  Placement(7, "ulsam", "substitute", 4), Placement(2, "cbam", "insert")]),
    ("timm:convnext_atto", [Placement(2, "se", "inside"), Placement(3, "eca", "parallel"), Placement(5, "se")]),
    ("timm:densenet121", [Placement(3, "eca"), Placement(8, "se")]),
    (USER, EVERY_OP),
])
def test_every_op_builds_counts_and_exports_to_onnx_like_pytorch(backbone, placements, tmp_path):
    """Each op at its kind of block (an identity shortcut with an activation after the sum, a projection
    shortcut, no activation, a dense layer): counted on meta, run, exported and checked with onnxruntime."""
    arch = Arch(backbone, num_classes=10, input_size=64, in_chans=1, placements=placements)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    assert sum(p.numel() for p in model.parameters()) == complexity(arch)["params"]
    x = torch.randn(2, 1, 64, 64)
    report = export_model(model, arch, "onnx", tmp_path / "m.onnx", x, (0.5,), (0.25,))
    assert report.max_abs_diff < 1e-3


def test_parallel_beside_an_identity_shortcut_adds_the_module_of_the_input_before_the_activation():
    """relu(F(x) + x + A(x)): with SE's gate forced open A(x) = x, so the block gives relu(F(x) + 2x), which
    A added after the activation (relu(F(x) + x) + x) would not."""
    torch.manual_seed(0)
    placed = build_model(Arch(USER, num_classes=10, input_size=28, placements=[Placement(2, "se", "parallel")]))
    attention = placed.placed[0][1]
    torch.nn.init.zeros_(attention.fc2.weight), torch.nn.init.constant_(attention.fc2.bias, 1e4)  # gate → 1
    placed.eval()
    x = placed.stem(torch.randn(2, 3, 28, 28))
    block = placed.blocks[0].block
    branch = block.bn2.end(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(placed.blocks[0](x), torch.relu(branch + 2 * x), atol=1e-5)
    assert not torch.allclose(torch.relu(branch + x) + x, torch.relu(branch + 2 * x), atol=1e-3)


def test_the_branch_end_is_a_module_that_returned_it_before_the_sum():
    """A branch that ends in a tensor function (a gate) has no module to wrap: the in-place sum and ReLU after
    it keep its id, and the ReLU, which returned that tensor after the sum, is not taken for the branch end. A
    module called twice (a shared ReLU) is not wrapped, so a module inserted there runs once."""
    positions = Arch("py:user_cnn:shared_relu_cnn", num_classes=10, input_size=16).positions()
    assert [(p.name, p.ops) for p in positions] == [
        ("stem", ("insert",)), ("block", ("insert", "substitute")), ("gated", ("insert", "substitute"))]
    vanilla = complexity(Arch("py:user_cnn:shared_relu_cnn", num_classes=10, input_size=16))
    one = complexity(Arch("py:user_cnn:shared_relu_cnn", num_classes=10, input_size=16,
                          placements=[Placement(1, "eca")]))
    with torch.device("meta"):
        from nas_attn.modules import create
        eca = sum(p.numel() for p in create("eca", 8).parameters())
    assert one["params"] == vanilla["params"] + eca


def test_inside_and_parallel_take_the_first_and_the_last_module_of_the_branch_end():
    """With drop-path, timm's BasicBlock returns bn2's output through DropPath: inside goes after bn2 (before the
    drop, where timm's SE slot is), parallel after DropPath (A(x) is not dropped with the branch)."""
    from nas_attn.backbones.nets.auto import numbering

    units = numbering("timm:resnet18", 64, 3, {"drop_path_rate": 0.1})
    last = units[-1].residual  # the first block's rate is 0: it has no DropPath
    assert last.branch == "layer4.1.bn2" and last.beside == "layer4.1.drop_path"


@pytest.mark.parametrize("args,why", [
    ({"num_classes": 5}, "num_classes cannot be given there"),
    ({"pretrained": True}, "pretrained cannot be given there"),
    ({"act_layer": object()}, "must hold JSON values only"),
])
def test_backbone_args_the_arch_sets_or_json_cannot_hold_are_refused(args, why):
    with pytest.raises(ArchError, match=why):
        Arch("timm:resnet18", backbone_args=args).validate()


def test_a_resume_that_numbers_the_backbone_otherwise_is_refused(tmp_path):
    from types import SimpleNamespace

    from nas_attn.checks import check_numbering
    from nas_attn.errors import NasAttnError
    from nas_attn.records import Manifest
    from nas_attn.space import load_space

    space = load_space(str(write_space(tmp_path / "s.yaml", USER_SPACE)))
    run = SimpleNamespace(path=tmp_path / "run1")
    now = space.base.numbering_record()
    assert now["positions"] == 4 and len(now["digest"]) == 16
    check_numbering(space, run, Manifest(numbering=now))  # the same numbering: nothing to say
    check_numbering(space, run, Manifest())  # a run of a hand-written family, or an older manifest
    with pytest.raises(NasAttnError, match="run run1 numbered py:user_cnn:small_cnn as 4 positions"):
        check_numbering(space, run, Manifest(numbering={**now, "digest": "0" * 16}, versions={"timm": "0.9"}))


@pytest.mark.parametrize("name,why", [
    ("timm:vit_tiny_patch16_224", "no block sequence"),
    ("timm:resnt18", "no timm model 'resnt18'"),
    ("torchvision:vit_b_16", "no block sequence"),
    ("torchvision:fasterrcnn_resnet50_fpn", "no torchvision classification model"),
    ("py:user_cnn:not_a_model", "returned a str, not a torch nn.Module"),
    ("py:user_cnn:raises", "raised RuntimeError: the user's factory failed"),
    ("py:no_such_module:f", "cannot import no_such_module"),
    ("py:user_cnn:missing", "user_cnn has no missing"),
    ("py:user_cnn", "expected py:<package.module:factory>"),
    ("timm:resnet18\n", "expected timm:<a timm model name>"),
    ("py:user_cnn_broken:f", "cannot import user_cnn_broken (ZeroDivisionError: division by zero)"),
])
def test_a_model_that_cannot_be_numbered_is_one_line_exit_2(name, why):
    with pytest.raises(ArchError, match=why.replace("(", r"\(").replace(")", r"\)")):
        Arch(name, input_size=224).positions()
    r = _cli("positions", name)
    assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_a_map_that_collapses_is_one_line():
    r = _cli("positions", "torchvision:alexnet", "--input-size", "16")
    assert r.returncode == 2 and "forward pass at 16 px fails" in r.stderr and len(r.stderr.splitlines()) == 1


def test_settings_that_a_library_backbone_does_not_take_are_refused():
    with pytest.raises(ArchError, match="small_input applies to the hand-written families only"):
        Arch("timm:resnet18", small_input=True).validate()
    with pytest.raises(ArchError, match="has no width multiplier"):
        Arch("timm:resnet18", width=0.5).validate()
    with pytest.raises(ArchError, match="backbone_args are for timm:"):
        Arch("mobilenetv2", backbone_args={"drop_rate": 0.1}).validate()
    with pytest.raises(ArchError, match=r"layer 3 \(InvertedResidual, 16->24, stride 2\) has no residual branch"):
        Arch("timm:efficientnet_b0", placements=[Placement(3, "se", "inside")]).validate()


def test_backbone_args_reach_the_factory_and_the_json_round_trips():
    arch = Arch(USER, num_classes=10, input_size=28, backbone_args={"width": 8})
    assert arch.positions()[0].out_channels == 8
    assert Arch.from_json(arch.to_json()) == arch and "backbone_args" in arch.to_json()
    assert "backbone_args" not in Arch("mobilenetv2").to_json()
    assert arch.network_key() != Arch(USER, num_classes=10, input_size=28).network_key()


def test_positions_print_the_module_of_each_position():
    r = _cli("positions", "timm:efficientnet_b0", "--input-size", "224")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:3] == ["pos", "module", "kind"]
    assert lines[3].split()[:3] == ["2", "blocks.0.0", "DepthwiseSeparableConv"]
    assert len(lines) == 2 + 18  # the stem, 16 blocks of 7 stages, the head's 1x1 conv


USER_SPACE = f"""
backbone: {{name: "{USER}", backbone_args: {{width: 8}}}}
dataset: {{name: fashion_mnist, input_size: 28, train_subset: 300, val_subset: 100, test_subset: 200}}
search: {{positions: [2, 3, 4], modules: [none, se, ulsam], groups: [2], ops: [insert, inside, parallel]}}
sampler: {{name: random, seed: 0}}
budget: {{trials: 3, concurrency: 2}}
resources: {{cpu: 1, gpu: 0}}
train: {{epochs: 1, batch_size: 32, bn_recalibration: 0}}
"""


@pytest.mark.slow
def test_a_users_own_cnn_is_searched_end_to_end(tmp_path):
    """``py:`` through the whole path: trials, front, manifest numbering, heatmaps, dashboard, ONNX export,
    load_trial; a resume that numbers the model otherwise is refused in one line."""
    space = write_space(tmp_path / "user_cnn.yaml", USER_SPACE)
    results = tmp_path / "results"
    r = search("--space", space, "--results-dir", results)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = only_run(results, "user_cnn")
    front = pd.read_csv(run / "front.csv")
    assert len(front) >= 1 and front["test_acc"].between(0, 1).all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["numbering"]["backbone"] == USER and manifest["numbering"]["positions"] == 4
    trial = int(front["trial"].iloc[0])
    assert (run / "heatmaps" / f"{trial}.npz").is_file()
    page = tmp_path / "page.html"
    d = _cli("dashboard", run, "--out", page)
    assert d.returncode == 0, d.stderr
    assert "blocks.1" in page.read_text()  # the placement strip names the automatically numbered positions
    out = tmp_path / "m.onnx"
    e = _cli("export", run, "--trial", trial, "--format", "onnx", "--out", out)
    assert e.returncode == 0 and out.is_file(), e.stderr
    import nas_attn
    model = nas_attn.load_trial(run, trial)
    with np.load(run / "heatmaps" / "images.npz") as z:
        assert len(z["images"]) > 0
    assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 10)

    manifest["numbering"]["digest"] = "0" * 16  # as another timm or torchvision would number it
    (run / "manifest.json").write_text(json.dumps(manifest))
    again = search("--space", space, "--results-dir", results, "--run-id", run.name)
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    assert "numbered py:user_cnn:small_cnn as 4 positions" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_the_numbering_is_the_same_in_another_process():
    """Deterministic for a given library version: a fresh process computes the same digest."""
    here = Arch("timm:efficientnet_b0", num_classes=10, input_size=64).numbering_record()
    code = ("import json; from nas_attn import Arch; "
            "print(json.dumps(Arch('timm:efficientnet_b0', num_classes=10, input_size=64).numbering_record()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env(), cwd=REPO)
    assert r.returncode == 0 and json.loads(r.stdout) == here == {**here, "positions": 18}
