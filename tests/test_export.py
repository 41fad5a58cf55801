"""Taking archs out of the tool: every front arch of a real smoke run in every format, checked against PyTorch;
every registered module, and every backbone family with every op, through ONNX (onnxruntime) and TorchScript;
load_trial without Ray."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from searchutil import REPO, env

from nas_attn import Arch, Placement, build_model, load_trial
from nas_attn.backbones.nets.common import InsertAfter
from nas_attn.errors import NasAttnError
from nas_attn.export import FORMATS, _run_exported, export_model, export_trial
from nas_attn.modules import get_entry, list_modules


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nas_attn", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env(), cwd=REPO)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_front_arch_exports_and_matches_pytorch(smoke_run, tmp_path, fmt):
    run, _ = smoke_run
    front = pd.read_csv(run / "front.csv")
    images = np.load(run / "heatmaps" / "images.npz")
    x = (torch.from_numpy(images["images"].astype(np.float32) / 255) - float(images["mean"][0])) / float(images["std"][0])
    for trial in front["trial"]:
        out = tmp_path / f"{trial}.{fmt}"
        r = _cli("export", run, "--trial", trial, "--format", fmt, "--out", out)
        assert r.returncode == 0 and "outputs match PyTorch's" in r.stdout, r.stderr
        model = load_trial(run, int(trial))  # the Python entry point: no Ray
        with torch.no_grad():
            expected = model(x).numpy()
        got = _run_exported(fmt, out, Arch.from_json(front.set_index("trial").loc[trial, "arch"]), x)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
        assert (expected.argmax(1) == got.argmax(1)).all()


def test_export_refuses_bad_input_in_one_line(smoke_run, tmp_path):
    run, _ = smoke_run
    trial = int(pd.read_csv(run / "front.csv")["trial"].iloc[0])
    for args, message in [
        ((run, "--trial", 999, "--format", "onnx", "--out", tmp_path / "x.onnx"), "no trial 999"),
        ((run, "--trial", trial, "--format", "onnx", "--out", tmp_path), "a folder; give the file to write"),
        ((run, "--trial", trial, "--format", "onnx", "--out", tmp_path / "no" / "x.onnx"), "no such folder"),
        ((tmp_path, "--trial", trial, "--format", "onnx", "--out", tmp_path / "x.onnx"), "not a nas-attn run folder"),
        ((run, "--trial", trial, "--format", "keras", "--out", tmp_path / "x"), "invalid choice: 'keras'"),
    ]:
        r = _cli("export", *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())  # nothing half-written


def _placement(module, position):
    groups = 2 if get_entry(module).takes_groups else None
    return Placement(position, module, "insert", groups)


@pytest.mark.parametrize("module", list_modules())
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_registered_module_exports(module, fmt, tmp_path):
    """Placed at two positions of a small trained-shape model (eval mode), compared with PyTorch's output."""
    arch = Arch("mobilenetv2", width=0.35, num_classes=10, input_size=32, in_chans=1, small_input=True,
                placements=[_placement(module, 14), _placement(module, 17)])
    torch.manual_seed(0)
    model = build_model(arch).eval()
    x = torch.randn(4, 1, 32, 32)
    report = export_model(model, arch, fmt, tmp_path / f"m.{fmt}", x, (0.5,), (0.25,))
    assert report.max_abs_diff < 1e-3 and report.bytes > 10_000


def _small(backbone, *placements, **kw):
    return Arch(backbone, num_classes=10, input_size=32, small_input=True, placements=list(placements), **kw)


#: one small arch per family, its modules placed where each block type attaches them: timm's Bottleneck and
#: BasicBlock (SE slot, shortcut), the pre-activation block (conv2, projection), the inverted residual, DenseNet
FAMILIES = {
    "mobilenetv1": _small("mobilenetv1", Placement(3, "cam"), Placement(5, "sam"), width=0.25),
    "mobilenetv2": _small("mobilenetv2", Placement(13, "ulsam", "substitute", 4), Placement(14, "se", "parallel"),
                          Placement(16, "eca", "inside"), width=0.35),
    "resnet50": _small("resnet50", Placement(1, "cbam", "inside"), Placement(2, "eca", "parallel"),
                       Placement(4, "gc", "parallel"), Placement(5, "ulsam", "substitute", 4), width=0.25),
    "wrn16_8": _small("wrn16_8", Placement(1, "csm", "parallel"), Placement(2, "lgam", "inside"),
                      Placement(4, "se", "parallel")),
    "densenet_bc100": _small("densenet_bc100", Placement(30, "nonlocal")),
    "drn_d_22": _small("drn_d_22", Placement(4, "bam", "substitute"), Placement(5, "la", "parallel"),
                       Placement(6, "sge", "inside", 4), width=0.25),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_every_family_exports_with_every_op(family, fmt, tmp_path):
    """export_model writes the file and loads it back (onnxruntime, torch.jit), its outputs PyTorch's."""
    arch = FAMILIES[family]
    torch.manual_seed(0)
    model = build_model(arch).eval()
    report = export_model(model, arch, fmt, tmp_path / f"m.{fmt}", torch.randn(2, 3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    assert report.path.is_file() and math.isfinite(report.max_abs_diff)


def test_a_module_onnx_cannot_export_is_one_line(tmp_path, capfd):
    """A module with an operator ONNX lacks, inserted as build_model inserts: a one-line error, no file, and
    not the exporter's graph dump on stdout."""
    class Eigen(torch.nn.Module):  # aten::linalg_eigvalsh has no ONNX symbolic (opset 17)
        def forward(self, x):
            gram = torch.einsum("bchw,bdhw->bcd", x, x)
            return x * torch.linalg.eigvalsh(gram).mean(-1)[:, None, None, None]

    arch = _small("mobilenetv1", Placement(3, "se"), width=0.25)
    model = build_model(arch).eval()
    model.layers[3] = InsertAfter(model.layers[3], Eigen())
    with pytest.raises(NasAttnError) as exc:
        export_model(model, arch, "onnx", tmp_path / "m.onnx", torch.randn(2, 3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    assert str(exc.value).startswith("3:1 se: cannot be exported to onnx (UnsupportedOperatorError: ")
    assert "linalg_eigvalsh" in str(exc.value) and "\n" not in str(exc.value)
    assert not any(tmp_path.iterdir())
    assert len(capfd.readouterr().out.splitlines()) < 3


def test_an_export_that_does_not_match_is_refused(tmp_path):
    class Stochastic(torch.nn.Module):  # differs on every call: no export can reproduce it
        def forward(self, x):
            return x.mean((2, 3)) + torch.rand(x.shape[0], 1)

    arch = Arch("mobilenetv2", width=0.35, num_classes=10, input_size=32, in_chans=1, small_input=True)
    with pytest.raises(NasAttnError, match="outputs differ from PyTorch's"):
        export_model(Stochastic(), arch, "torchscript", tmp_path / "m.pt", torch.randn(4, 1, 32, 32), (0.5,), (0.25,))
    assert not (tmp_path / "m.pt").exists()


def test_export_trial_writes_only_a_checked_file(smoke_run, tmp_path):
    run, _ = smoke_run
    trial = int(pd.read_csv(run / "front.csv")["trial"].iloc[0])
    report = export_trial(run, trial, "state_dict", tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert report.path == tmp_path / "m.pt" and set(saved) == {"arch", "state_dict", "mean", "std"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
