"""What a search does to its process and to its run folder's neighbours: the settings it changes are undone
when it returns or raises (issue 18), and a second search on a run folder in use is refused at once
(issue 22 §3)."""

import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import optuna
import pandas as pd
import pytest
from searchutil import REPO, TINY_SPACE, env, write_space

from nas_attn.errors import NasAttnError
from nas_attn.search import process_settings, run_search
from nas_attn.search.process import ENV_DEFAULTS


def _state():
    ray_logger = logging.getLogger("ray")
    return (dict(os.environ), logging.raiseExceptions, optuna.logging.get_verbosity(),
            [(h, h.level) for h in ray_logger.handlers])


def test_process_settings_are_undone_on_exit_and_on_error(tmp_path, monkeypatch):
    for key in ENV_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the user's own value is kept, and kept after
    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "0")  # set for the search, given back after
    own = logging.StreamHandler()
    own.setLevel(logging.INFO)
    logging.getLogger("ray").addHandler(own)  # stands for the handler Ray adds when imported
    try:
        before = _state()
        with pytest.raises(RuntimeError, match="boom"), process_settings() as settings:
            settings.log_ray_to(tmp_path / "ray.log")
            assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0" and os.environ["RAY_AUTH_MODE"] == "token"
            assert os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] == "1"
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            assert not logging.raiseExceptions and own.level == logging.CRITICAL
            assert optuna.logging.get_verbosity() == optuna.logging.WARNING
            logging.getLogger("ray.tune").warning("to the file")
            raise RuntimeError("boom")
        assert _state() == before
        assert "to the file" in (tmp_path / "ray.log").read_text()
    finally:
        logging.getLogger("ray").removeHandler(own)


SMALL = TINY_SPACE


def test_a_search_that_fails_after_ray_started_leaves_the_process_and_results_as_they_were(tmp_path):
    """run_search from Python: an Optuna storage that cannot be opened is found after Ray started and the Ray
    log went to the run folder; the settings are undone and the new run folder is gone."""
    import ray  # noqa: F401  (imported first: Ray adds its own handlers when imported, not the search)

    space = write_space(tmp_path / "s.yaml", textwrap.dedent(SMALL))
    results = tmp_path / "results"
    a_folder = tmp_path / "study.db"
    a_folder.mkdir()
    before = _state()
    with pytest.raises(NasAttnError, match="--storage .*: cannot open"):
        run_search(space, results_dir=str(results), run_id="r1", quiet=True,
                   storage=f"sqlite:///{a_folder}")  # a folder where the database file goes
    after = _state()
    assert {k: v for k, v in after[0].items() if before[0].get(k) != v} == {} and set(before[0]) <= set(after[0])
    assert after[1:] == before[1:]
    assert not results.exists()  # the folder it created (and the results folder above it) removed




def test_a_second_search_on_a_new_run_folder_is_refused_at_once_and_the_first_completes(tmp_path):
    results = tmp_path / "results"
    lock = results / "smoke" / "r1" / ".lock"
    args = ["--space", "smoke", "--results-dir", str(results), "--run-id", "r1", "--trials", "2", "--quiet"]
    first = subprocess.Popen([sys.executable, str(REPO / "search.py"), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.exists(), "the first search never locked its run folder"
        t0 = time.monotonic()
        second = subprocess.run([sys.executable, str(REPO / "search.py"), *args], capture_output=True, text=True,
                                env=env(), cwd=REPO, timeout=60)
        took = time.monotonic() - t0
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
    # Ray takes several seconds to start: refused in under 2 s, the second search never got that far
    assert second.returncode == 2 and took < 2, (took, second.stderr)
    assert second.stdout == "" and len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"{lock.parent} is in use by another search (PID {first.pid}" in second.stderr
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    assert len(pd.read_parquet(lock.parent / "trials.parquet")) == 2
    assert json.loads((lock.parent / "manifest.json").read_text())["status"] == "finished"
