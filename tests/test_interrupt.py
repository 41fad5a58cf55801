"""Ctrl-C (SIGINT) and SIGTERM stop a real search cleanly; the printed command resumes it."""

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from optuna.trial import TrialState
from searchutil import REPO, env, launcher_of, load_study, session_gone, write_space

SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 400, val_subset: 200, test_subset: 200}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
sampler: {name: random, seed: 0}
budget: {trials: 4, concurrency: 2}
resources: {cpu: 1, gpu: 0}
train: {epochs: 2, batch_size: 32, lr: 0.05, bn_recalibration: 128}
"""


def _start(tmp_path, results, **popen):
    space = write_space(tmp_path / "stoppable.yaml", textwrap.dedent(SPACE))
    log = open(tmp_path / "search.log", "w")
    cmd = [sys.executable, str(REPO / "search.py"), "--space", str(space), "--results-dir", str(results),
           "--run-id", "r1"]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env(), cwd=REPO, **popen)


def _wait_for_epoch(p, run, timeout=300):
    """Until some trial has reported an epoch (so trials are running) — read from Tune's result files."""
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if any(f.stat().st_size for f in run.glob("tune/attempt-1/*/result.json")):
            return
        time.sleep(0.5)
    raise AssertionError("no trial reported an epoch")


@pytest.mark.slow
def test_ctrl_c_records_running_trials_as_interrupted_and_the_printed_command_resumes(tmp_path):
    results = tmp_path / "results"
    run = results / "stoppable" / "r1"
    p = _start(tmp_path, results)
    _wait_for_epoch(p, run)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("search.py: interrupted: SIGINT: ") and "trial(s) will run again" in lines[-1], err
    assert "Traceback" not in err and "Tuner.restore" not in err + (tmp_path / "search.log").read_text()
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "interrupted" and m["attempts"][-1]["ended"] and m["attempts"][-1]["status"] == "interrupted"
    assert sum(m["attempts"][-1]["counts"].values()) == len(
        [t for t in load_study(run, "stoppable").trials if t.state == TrialState.COMPLETE])
    assert not (run / "front_eval.json").exists()  # no test-set evaluation of a partial front
    study = load_study(run, "stoppable")
    interrupted = study.user_attrs["interrupted_trials"]
    assert interrupted and all(study.trials[n].state == TrialState.FAIL for n in interrupted)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    done_before = {t.number for t in study.trials if t.state == TrialState.COMPLETE}

    # the command works as pasted, from another folder: this interpreter, search.py and the space by full path
    command = shlex.split(lines[-1].split("resume with: ", 1)[1])
    assert command[:2] == [sys.executable, str(REPO / "search.py")] and "--run-id" in command, command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env(), cwd=elsewhere)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    study = load_study(run, "stoppable")
    complete = {t.number for t in study.trials if t.state == TrialState.COMPLETE}
    assert done_before <= complete and len(complete) == 4  # nothing lost, the interrupted ones ran again
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 4 and set(trials["status"]) == {"complete"} and not set(interrupted) & set(trials["trial"])
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "finished" and [a["status"] for a in m["attempts"]] == ["interrupted", "finished"]
    assert m["attempts"][-1]["counts"] == {"complete": 4}


@pytest.mark.slow
def test_sigterm_stops_with_143_and_a_second_signal_exits_at_once(tmp_path):
    results = tmp_path / "results"
    run = results / "stoppable" / "r1"
    p = _start(tmp_path, results)
    _wait_for_epoch(p, run)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # two signals sent at once reach Python's handler as one
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and time.time() - t0 < 10, err
    assert "second signal: exiting now" in err


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_stops_cleanly_and_ray_goes_with_it(tmp_path):
    """What ``timeout``, systemd, Slurm and ``docker stop`` send: the driver's whole group gets SIGTERM. Ray
    lives in a session of its own, so the driver stops the search as on its own SIGTERM, and Ray ends after."""
    results = tmp_path / "results"
    run = results / "stoppable" / "r1"
    p = _start(tmp_path, results, start_new_session=True)
    _, ray_session = launcher_of(p.pid)
    assert ray_session != os.getsid(p.pid)  # Ray is out of reach of a signal to the driver's group
    _wait_for_epoch(p, run)
    os.killpg(p.pid, signal.SIGTERM)
    t0 = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and time.time() - t0 < 20, err
    last = err.strip().splitlines()[-1]
    assert "interrupted: SIGTERM" in last and "resume with: " in last, err
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert session_gone(ray_session), "Ray's processes outlived the search"
