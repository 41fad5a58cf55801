"""Taking a trained arch out of the tool (:func:`nas_attn.load_trial` rebuilds it with its weights):
``nas-attn export RUN_DIR --trial N --format {torchscript,onnx,state_dict} --out FILE`` writes it, checked
against PyTorch on the run's test images before it is kept.

Exported models take images normalised as in training: ``(x / 255 - mean) / std`` with the run's mean and
std, which the export records (``state_dict``: in the file; ONNX: metadata ``mean``/``std``; TorchScript:
printed). ONNX uses torch's TorchScript-based exporter (``dynamo=False``), which needs no ``onnxscript``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas_attn.arch import Arch
from nas_attn.checks import check_out_file
from nas_attn.errors import NasAttnError
from nas_attn.trained import find_trial, model_of

FORMATS = ("torchscript", "onnx", "state_dict")
#: an export is kept when its outputs match PyTorch's within this (eval mode, float32)
ATOL, RTOL = 1e-4, 1e-3


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str
    max_abs_diff: float  #: against PyTorch, on the test images
    seconds: float
    bytes: int


def _test_images(run_dir: Path, arch: Arch):
    """The run's heatmap images (normalised), else its test set's first images from the manifest's dataset."""
    from nas_attn.probes import HeatmapImages, run_heatmap_images

    images = HeatmapImages.load(run_dir)
    return images if images is not None else run_heatmap_images(run_dir, arch.input_size, 16)


def _write(model, fmt: str, out: Path, x, arch: Arch, mean, std) -> None:
    import torch

    if fmt == "state_dict":
        torch.save({"arch": arch.to_dict(), "state_dict": model.state_dict(), "mean": mean, "std": std}, out)
    elif fmt == "torchscript":
        with _no_deprecation_warnings():
            torch.jit.trace(model, x).save(str(out))
    else:
        with _no_deprecation_warnings(), _quiet_native_stdout():  # TorchScript's ONNX exporter (dynamo's is new)
            torch.onnx.export(model, (x,), str(out), dynamo=False, input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
        _add_onnx_metadata(out, mean, std)


@contextlib.contextmanager
def _no_deprecation_warnings():
    """TorchScript (``torch.jit``) is deprecated in torch 2.14 but is still the format users ask for: say
    nothing about it on every export."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@contextlib.contextmanager
def _quiet_native_stdout():
    """Silence file descriptor 1 around the ONNX export: when an op cannot be exported, torch 2.14's exporter
    prints the whole graph from C++ (its ONNX log is always on), which ``contextlib.redirect_stdout`` cannot
    catch; the failure itself still reaches the user as one line."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all (closed): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _add_onnx_metadata(path: Path, mean, std) -> None:
    import onnx

    proto = onnx.load(str(path))
    for key, value in (("mean", mean), ("std", std)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, ",".join(f"{v:.6f}" for v in value)
    onnx.save(proto, str(path))


def _run_exported(fmt: str, path: Path, arch: Arch, x) -> np.ndarray:
    """The exported file's outputs on ``x``, loaded as a user would load it."""
    import torch

    if fmt == "state_dict":
        from nas_attn.build import build_model

        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(Arch.from_dict(saved["arch"]))
        model.load_state_dict(saved["state_dict"])
        with torch.no_grad():
            return model.eval()(x).numpy()
    if fmt == "torchscript":
        with torch.no_grad(), _no_deprecation_warnings():
            return torch.jit.load(str(path)).eval()(x).numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x.numpy()})[0]


def export_model(model, arch: Arch, fmt: str, out: Path, x, mean, std) -> ExportReport:
    """Write ``model`` as ``fmt`` to ``out`` and check its outputs on ``x`` against PyTorch's (eval mode).

    Raises:
        NasAttnError: the arch cannot be exported to ``fmt``, or the export's outputs differ.
    """
    import torch

    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    t0 = time.perf_counter()
    try:
        _write(model, fmt, out, x[:1], arch, mean, std)
        got = _run_exported(fmt, out, arch, x)
    except Exception as exc:  # a module the exporter or onnxruntime cannot handle: say which, in one line
        out.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise NasAttnError(f"{arch.short()}: cannot be exported to {fmt} ({type(exc).__name__}: {first})") from None
    diff = float(np.abs(got - expected).max())
    if not np.allclose(got, expected, atol=ATOL, rtol=RTOL) or not math.isfinite(diff):
        out.unlink(missing_ok=True)
        raise NasAttnError(f"{arch.short()}: the {fmt} export's outputs differ from PyTorch's by {diff:.3g}")
    return ExportReport(out, fmt, diff, round(time.perf_counter() - t0, 3), out.stat().st_size)


def export_trial(run_dir: str | Path, trial: int, fmt: str, out: str | Path) -> ExportReport:
    """``nas-attn export``: trial ``trial`` of ``run_dir`` as ``fmt`` in ``out``, checked on the test images."""
    if fmt not in FORMATS:
        raise NasAttnError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    if out.is_dir():
        raise NasAttnError(f"--out {out}: a folder; give the file to write")
    if not out.parent.is_dir():
        raise NasAttnError(f"--out {out}: no such folder {out.parent}")
    check_out_file(out)  # nas_attn.checks: /proc, a read-only folder
    found = find_trial(run_dir, trial)
    model = model_of(found)
    images = _test_images(found.run_dir, found.arch)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:  # kept only once checked
        report = export_model(model, found.arch, fmt, Path(tmp) / out.name, images.tensor(), images.mean, images.std)
        report.path.replace(out)
    return ExportReport(out, fmt, report.max_abs_diff, report.seconds, report.bytes)
