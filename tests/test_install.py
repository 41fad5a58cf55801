"""Installed as a user would (``pip install .``, not editable) and run from another directory: named spaces,
the bundled data and the dashboard come from the installed package, not from the source tree."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO

IGNORE = shutil.ignore_patterns(".venv", ".git", "results", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                ".ruff_cache", ".whl", "docs")


def _run(cmd, cwd, timeout=600):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_pip_install_then_run_from_another_directory(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=IGNORE, symlinks=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # the dependencies (torch, Ray, …) come from this environment; nas-attn itself is installed fresh
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = venv / "bin" / "python"
    r = _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([py, "-c", "import nas_attn, pathlib; print(pathlib.Path(nas_attn.__file__).parent)"], elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr  # not the source tree
    cli = venv / "bin" / "nas-attn"
    r = _run([cli, "search", "--space", "smoke", "--results-dir", "out", "--trials", "2", "--run-id", "r"], elsewhere)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "bundled stratified sample" in r.stdout and (elsewhere / "out" / "smoke" / "r" / "front.csv").is_file()
    r = _run([cli, "dashboard", elsewhere / "out" / "smoke" / "r"], elsewhere, timeout=120)
    assert r.returncode == 0 and (elsewhere / "out" / "smoke" / "r" / "dashboard.html").stat().st_size > 1_000_000, r.stderr
    r = _run([cli, "search", "--space", "no_such_space"], elsewhere, timeout=120)
    assert r.returncode == 2 and "mobilenetv2_ulsam" in r.stderr  # the shipped spaces are listed
