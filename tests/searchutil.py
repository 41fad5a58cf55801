"""Helpers for the end-to-end search tests: run search.py as a user would, read what it left."""

import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"


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
