import json
import subprocess
import sys

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
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 17
    assert "drn_c_26" in r.stdout and "21,126,584" in r.stdout
    r = _run("modules")
    line = next(x for x in r.stdout.splitlines() if x.startswith("nonlocal "))
    assert "<= 1024 positions" in line


def test_paper_tables_unknown_paper_is_one_line_exit_2():
    r = _run("paper-tables", "--paper", "LGAM")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no figures for paper 'LGAM'" in r.stderr and "not available here: ULSAM, LGAM, LADNet" in r.stderr


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
     "placement 1 (14:1 csm): order must be one of channel-first, spatial-first, got 'sideways'"),
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
