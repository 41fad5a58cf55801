import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def _run(*args):
    return subprocess.run([sys.executable, "-m", "nas_attn", *args], capture_output=True, text=True, cwd=REPO)


def test_positions_table():
    r = _run("positions", "mobilenetv2", "--input-size", "32", "--small-input")
    assert r.returncode == 0
    line14 = next(line for line in r.stdout.splitlines() if line.split()[:1] == ["14"])
    assert line14.split()[2:6] == ["96", "96", "1", "8"] and "substitute" in line14


def test_complexity_prints_json(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('{"backbone": "mobilenetv2", "placements": [{"position": 17, "module": "ulsam", "groups": 4}]}')
    r = _run("complexity", "--arch", str(f))
    assert r.returncode == 0
    out = json.loads(r.stdout)
    assert out["params"] == 3_504_872 + 320 and out["flops"] == 300_774_272 + 15_680


def test_invalid_arch_is_one_line_exit_2():
    r = _run("complexity", "--arch", '{"backbone": "mobilenetv2", "placements": [{"position": 8, "op": "substitute", '
                                     '"module": "ulsam"}]}')
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "placement 1 (8:ulsam/sub)" in r.stderr
    r = _run("complexity", "--arch", "{not json")
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
    r = _run("positions", "mobilenetv2", "--wrong-flag")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_complexity_counts_light_attention():
    """Issue 8: la crashed counting (autocast on the meta device); now it is counted like any module."""
    r = _run("complexity", "--arch", '{"backbone":"mobilenetv2","placements":[{"position":14,"op":"insert","module":"la"}]}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params"] == 3_504_872 + 2 * 96 * 6 + 6 + 96


def test_positions_of_a_variant_and_as_markdown():
    r = _run("positions", "resnet50", "--variant", "v1", "--markdown")
    assert r.returncode == 0 and r.stdout.splitlines()[2] == "| 1 | bottleneck | 64 → 256 | 1 | 56 | insert, inside, parallel |"
    r = _run("positions", "resnet18", "--variant", "v1")
    assert r.returncode == 2 and r.stderr.strip() == "nas-attn: error: arch: unknown variant 'v1' for resnet18 (it has none)"


def test_backbones_and_modules_lists():
    r = _run("backbones")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 17 + 1  # the families, then the library prefixes
    assert r.stdout.splitlines()[-1].startswith("and any CNN, numbered automatically: timm:<model>")
    assert "drn_c_26" in r.stdout and "21,126,584" in r.stdout
    r = _run("modules")
    line = next(x for x in r.stdout.splitlines() if x.startswith("nonlocal "))
    assert "<= 1024 positions" in line


def test_paper_tables_unknown_paper_is_one_line_exit_2():
    r = _run("paper-tables", "--paper", "SENet")  # a paper of no module here
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no figures for paper 'SENet'" in r.stderr and "papers: ULSAM, LGAM, LADNet, CSM" in r.stderr


BAD_ARCHS = [
    ('{"backbone":"mobilenetv2","input_size":1000000000000}', "input_size must be an integer in [8, 4096]"),
    ('{"backbone":"mobilenetv2","width":1e300}', "width must be a number in (0, 16.0]"),
    ('{"backbone":"mobilenetv2","num_classes":1e30}', "num_classes must be an integer"),
    ('{"backbone":"mobilenetv2","placements":[{"position":14,"module":"lgam","args":{"reduction":0}}]}',
     "module 'lgam': reduction must be a positive integer, got 0"),
    ('{"backbone":"mobilenetv2","placements":[{"position":14,"module":"la","args":{"reduction":-3}}]}',
     "module 'la': reduction must be a positive integer, got -3"),
    ('{"backbone":"mobilenetv2","placements":[{"position":14,"module":"bam","args":{"reduction":0.5}}]}',
     "module 'bam': reduction must be a positive integer, got 0.5"),
    ('{"backbone":"mobilenetv2","placements":[{"position":14,"module":"se","args":{"rd_ratio":0}}]}',
     "module 'se': rd_ratio must be a number in (0, 1]"),
    ('{"backbone":"mobilenetv2","placements":[{"position":14,"module":"csm","args":{"order":"sideways"}}]}',
     "placement 1 (14:1 csm): module 'csm': order must be one of channel-first, spatial-first, got 'sideways'"),
    ("DEEP", "arch: JSON nested too deeply"),
    ("BINARY", "as UTF-8 text"),
]


@pytest.mark.parametrize("arch,message", BAD_ARCHS, ids=[str(i) for i in range(len(BAD_ARCHS))])
def test_bad_arch_input_is_one_line_exit_2(tmp_path, arch, message):
    if arch == "BINARY":
        arch = str(tmp_path / "binary.json")
        (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00\x01binary")
    if arch == "DEEP":  # a file: an argument of this size is over the kernel's limit
        arch = str(tmp_path / "deep.json")
        (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    r = _run("complexity", "--arch", arch)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr


def _run_env(*args, stdout=subprocess.PIPE, **env):
    """``nas-attn`` as a user's shell runs it: output buffered (no PYTHONUNBUFFERED) unless ``env`` says so."""
    e = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | env
    return subprocess.run([sys.executable, "-m", "nas_attn", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, cwd=REPO, env=e, timeout=120)


FULL = Path("/dev/full")  # every write fails with ENOSPC: a full disk, with nothing filled


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_an_unexpected_error_is_one_line_and_a_logged_traceback(tmp_path, unbuffered):
    """Output to a full disk: the write fails in the command (unbuffered) or when its output is flushed; either
    way one line naming the error and the log, exit status 1, the traceback in the log."""
    with FULL.open("w") as full:
        r = _run_env("positions", "resnet18", stdout=full, NAS_ATTN_LOG_DIR=str(tmp_path), PYTHONUNBUFFERED=unbuffered)
    [log] = tmp_path.iterdir()
    assert r.returncode == 1 and r.stderr == ("nas-attn: unexpected error: OSError: [Errno 28] No space left on "
                                              f"device (full traceback in {log})\n"), r.stderr
    text = log.read_text()
    assert text.startswith("Traceback (most recent call last):") and "OSError: [Errno 28]" in text
    assert "_positions" in text or not unbuffered  # unbuffered, the print in the command is what failed


@pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux)")
def test_debug_prints_the_traceback_of_an_unexpected_error(tmp_path):
    with FULL.open("w") as full:
        r = _run_env("positions", "resnet18", "--debug", stdout=full, NAS_ATTN_LOG_DIR=str(tmp_path / "logs"),
                     PYTHONUNBUFFERED="1")
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and lines[0] == "Traceback (most recent call last):" and "_positions" in r.stderr
    assert lines[-1] == "nas-attn: unexpected error: OSError: [Errno 28] No space left on device"
    assert not (tmp_path / "logs").exists()  # shown, not logged


def test_a_broken_install_under_search_or_dashboard_is_one_line(tmp_path):
    """What the dashboard imports is imported under the same guard: a package that fails to import (here a
    broken plotly ahead on the path) is one line and a logged traceback."""
    (tmp_path / "plotly").mkdir()
    (tmp_path / "plotly" / "__init__.py").write_text('raise ImportError("plotly is broken here")\n')
    r = _run_env("dashboard", str(tmp_path), PYTHONPATH=str(tmp_path), NAS_ATTN_LOG_DIR=str(tmp_path / "logs"))
    [log] = (tmp_path / "logs").iterdir()
    assert r.returncode == 1 and r.stderr == ("nas-attn dashboard: unexpected error: ImportError: plotly is broken "
                                              f"here (full traceback in {log})\n"), r.stderr
    assert "nas_attn/dashboard" in log.read_text()
