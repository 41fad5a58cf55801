"""PostgreSQL as the study's storage (``--storage postgresql+psycopg2://…``, the ``postgres`` extra): a real
server (Debian's, a throwaway cluster per test), a search on it killed with -9 and resumed without losing a
completed trial, and a wrong URL refused in one line before anything starts."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from pgserver import free_port, postgres_server, unavailable
from searchutil import REPO, env

from nas_attn.errors import NasAttnError
from nas_attn.storage import check_storage_url

optuna.logging.set_verbosity(optuna.logging.WARNING)

needs_server = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def test_a_closed_port_is_one_line_at_once_and_hides_the_password():
    url = f"postgresql+psycopg2://nas:s3cret@127.0.0.1:{free_port()}/nas"
    start = time.monotonic()
    with pytest.raises(NasAttnError) as info:
        check_storage_url(url)
    assert time.monotonic() - start < 2
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message, message
    assert message.startswith(f"--storage postgresql+psycopg2://nas:***@127.0.0.1:{url.rsplit(':', 1)[1]}"), message
    assert "cannot connect" in message and "Connection refused" in message, message


def test_a_missing_driver_names_the_extra():
    # psycopg2 made unimportable in a fresh interpreter: what a user without the extra gets
    code = ("import sys; sys.modules['psycopg2'] = None\n"
            "from nas_attn.storage import check_storage_url\n"
            "check_storage_url('postgresql+psycopg2://u@127.0.0.1:5432/db')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=REPO)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and "NasAttnError: --storage postgresql+psycopg2://u@127.0.0.1:5432/db: no driver" in last
    assert "pip install 'nas-attn[postgres]' and write postgresql+psycopg2://" in last, r.stderr


def test_sqlite_urls_are_checked_without_creating_the_file(tmp_path):
    check_storage_url(f"sqlite:///{tmp_path}/study.db")
    assert not (tmp_path / "study.db").exists()
    with pytest.raises(NasAttnError, match=r"^--storage sqlite:///.*/missing/study.db: folder .*missing does not"):
        check_storage_url(f"sqlite:///{tmp_path}/missing/study.db")
    with pytest.raises(NasAttnError, match=r"^--storage notaurl: not a database URL"):
        check_storage_url("notaurl")


@needs_server
def test_a_running_server_passes_the_check():
    with postgres_server() as url:
        check_storage_url(url)


#: a --storage run's study is named after its space and run id: other runs share the database
STUDY = "smoke/pg"


def _completed(study: optuna.Study) -> dict[int, tuple]:
    return {t.number: (tuple(t.values), t.params) for t in study.trials if t.state == TrialState.COMPLETE}


def _search(url, results, **kw):
    cmd = [sys.executable, str(REPO / "search.py"), "--space", "smoke", "--results-dir", str(results),
           "--run-id", "pg", "--storage", url]
    return subprocess.Popen(cmd, env=env(), cwd=REPO, text=True, **kw)


def _stat(pid) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state, ppid, …, starttime at [19]); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> dict[int, str]:
    """The processes below ``pid`` (Ray's GCS, raylet and workers for a driver): pid -> start time."""
    stats = {int(n): st for n in os.listdir("/proc") if n.isdigit() and (st := _stat(n))}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, st in stats.items() if int(st[1]) in frontier} - found
        found |= frontier
    return {child: stats[child][19] for child in found}


def _alive(procs: dict[int, str]) -> list[int]:
    """Those of ``procs`` still running (the same process: same start time, not a zombie)."""
    return [pid for pid, started in procs.items()
            if (st := _stat(pid)) and st[19] == started and st[0] != "Z"]


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _kill_after_a_complete_trial(p: subprocess.Popen, storage, timeout=600) -> tuple[dict[int, tuple], dict[int, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        try:
            done = _completed(optuna.load_study(study_name=STUDY, storage=storage))
        except KeyError:  # the search has not created the study yet
            done = {}
        if done:
            ray = _descendants(p.pid)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=60)
            print(f"ray processes of the killed driver: {len(ray)}; alive right after: {len(_alive(ray))}")
            return _completed(optuna.load_study(study_name=STUDY, storage=storage)), ray
        time.sleep(0.5)
    raise AssertionError(f"no trial completed (search exited {p.returncode})")


@needs_server
@pytest.mark.slow
def test_a_search_on_postgres_killed_with_9_resumes_without_losing_a_trial(tmp_path):
    results = tmp_path / "results"
    with postgres_server() as url:
        storage = optuna.storages.RDBStorage(url)  # the tables exist before the search's first poll
        with open(tmp_path / "first.log", "w") as log:
            p = _search(url, results, stdout=log, stderr=subprocess.STDOUT)
            before, ray = _kill_after_a_complete_trial(p, storage)
        try:
            assert p.returncode == -signal.SIGKILL and before
            # what the killed driver left: trials still RUNNING in the study, Ray's session files and Tune's folder
            r = _search(url, results, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = r.communicate(timeout=600)
            assert r.returncode == 0, (tmp_path / "first.log").read_text()[-2000:] + out[-2000:] + err[-2000:]
            study = optuna.load_study(study_name=STUDY, storage=storage)
            after = _completed(study)
            assert {n: after.get(n) for n in before} == before  # every trial done before the kill, unchanged
            assert len(after) == 4 and not [t for t in study.trials if t.state == TrialState.RUNNING]
            assert "Traceback" not in err, err[-3000:]
            assert re.search(rf"resume: {len(before)} trial\(s\) already finished", out), out[-2000:]
            trials = pd.read_parquet(results / "smoke" / "pg" / "trials.parquet")
            assert len(trials) == 4 and trials["trial"].is_unique and (trials["status"] == "complete").all()
            manifest = json.loads((results / "smoke" / "pg" / "manifest.json").read_text())
            assert len(manifest["attempts"]) == 2 and manifest["status"] == "finished"
            assert manifest["study_name"] == STUDY
        finally:
            left = _alive(ray)
            print(f"Ray processes of the killed driver still running after the resume: {len(left)} "
                  f"({', '.join(sorted(_name(pid) for pid in left))})")
            for pid in left:  # orphans of the kill: not left to the rest of the suite
                os.kill(pid, signal.SIGKILL)
            storage.engine.dispose()
