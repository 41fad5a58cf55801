"""Helpers for the end-to-end search tests: run search.py as a user would, read what it left."""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"


#: the smallest search the tests run: one position, one trial of one epoch on a few hundred images
TINY_SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 200, val_subset: 100, test_subset: 200}
search: {positions: [17], modules: [none, ulsam], groups: [2]}
budget: {trials: 1}
resources: {cpu: 1, gpu: 0}
train: {epochs: 1, batch_size: 32, bn_recalibration: 0}
"""


def mount_tmpfs(mount: Path, size: str) -> bool:
    """A real tmpfs of ``size`` (``96k``, ``1m``) on the folder ``mount``: a disk that fills up; ``False`` where
    this machine does not let the tests mount one (not root)."""
    mount.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True).returncode == 0


def env() -> dict:
    e = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    e.pop("RAY_ADDRESS", None)  # the tests start their own local Ray (a test that joins one sets it itself)
    e["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return e


def search(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "search.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env(), cwd=REPO, **kw)


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load_study(run_dir: Path, name: str) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def only_run(results: Path, space: str) -> Path:
    runs = [p for p in (results / space).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _processes():
    """(pid, parent pid, session id, command line) of every process, read from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        yield int(entry.name), int(stat[1]), int(stat[3]), cmdline


def launcher_of(pid: int, timeout: float = 120) -> tuple[int, int]:
    """(pid, session id) of the process that holds the search's local Ray node (nas_attn/localray.py)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for child, parent, sid, cmdline in _processes():
            if parent == pid and "nas_attn.localray" in cmdline:
                return child, sid
        time.sleep(0.5)
    raise AssertionError("no local Ray launcher under the search process")


def session_gone(sid: int, timeout: float = 40) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not [p for p, _, s, _ in _processes() if s == sid]:
            return True
        time.sleep(0.5)
    return False
