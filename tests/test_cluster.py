"""Ray cluster: launch configs pass Ray's own validation; a real multi-node search survives losing a node."""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState
from searchutil import REPO, env, load_study, write_space

CONFIGS = ["scripts/cluster.yaml", "scripts/cluster-onprem.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_config_passes_rays_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / name).read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` does before touching any machine
    assert any("pip install" in c and '-e ".[cluster]"' in c for c in config["setup_commands"])  # this project
    # Ray starts with the project's venv first on PATH, so that a job's `nas-attn` / `python` is the project's
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all(c.startswith("export PATH=~/nas-attn/.venv/bin:$PATH") for c in starts)
    # and with glibc's arenas bounded, so that reused trial workers do not grow (nas_attn/search/process.py)
    assert all("MALLOC_ARENA_MAX=2;" in c for c in starts if "ray start" in c)
    bad = copy.deepcopy(config)
    bad["max_wrkers"] = 1
    with pytest.raises(Exception, match="max_wrkers"):
        validate_config(prepare_config(bad))


CLUSTER_SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 600, val_subset: 200, test_subset: 200}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert, substitute]}
sampler: {name: random, seed: 0}
budget: {trials: 4, concurrency: 2}
resources: {cpu: 1, gpu: 0}
train: {epochs: 3, batch_size: 32, lr: 0.05, bn_recalibration: 256}
"""


@pytest.mark.cluster
def test_multi_node_search_survives_a_lost_worker_node(tmp_path):
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    space = write_space(tmp_path / "clustered.yaml", textwrap.dedent(CLUSTER_SPACE))
    results = tmp_path / "results"
    run = results / "clustered" / "c1"
    log = open(tmp_path / "search.log", "w")
    p = subprocess.Popen([sys.executable, str(REPO / "search.py"), "--space", str(space), "--results-dir", str(results),
                          "--run-id", "c1", "--address", cluster.address], stdout=log, stderr=subprocess.STDOUT,
                         env=env(), cwd=REPO)
    try:
        deadline = time.time() + 300
        removed = False
        victim = workers[1]
        seen_nodes = set()
        while p.poll() is None and time.time() < deadline:
            time.sleep(0.5)
            # each epoch's result (written by Tune to the trial's result.json) names the node it ran on
            for result_file in run.glob("tune/attempt-1/*/result.json"):
                rows = []
                for line in result_file.read_text().splitlines():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:  # a line Tune is still writing
                        break
                seen_nodes |= {r.get("node_id") for r in rows}
                if not removed and rows and rows[-1].get("node_id") == victim.node_id and not rows[-1].get("completed"):
                    cluster.remove_node(victim, allow_graceful=False)  # lose the node under a running trial
                    removed = True
        assert p.wait(timeout=max(1, deadline - time.time())) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        if p.poll() is None:
            p.kill()
        cluster.shutdown()
    text = (tmp_path / "search.log").read_text()
    assert removed, text[-2000:]
    study = load_study(run, "clustered")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, text[-2000:]
    assert {w.node_id for w in workers} <= seen_nodes  # trials ran on both worker nodes
    assert any(t.user_attrs.get("restarts", 0) >= 1 for t in complete), text[-2000:]  # retried elsewhere
    assert "Ray Tune runs it again" in text
    survivor = workers[0].node_id
    for t in complete:
        if t.user_attrs.get("restarts"):
            assert t.user_attrs["node_id"] == survivor
    table = pd.read_parquet(run / "trials.parquet")
    assert len(table) == 4 and table["trial"].is_unique and (table["status"] == "complete").all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer in {timeout} s")


#: what Ray's job server answers while the head's job agent is still starting (no job is created then)
NO_AGENT_YET = "No available agent to submit job"


def _submit_when_the_job_agent_is_ready(submit: list[str], e: dict, cwd: Path,
                                        timeout: float = 120) -> subprocess.CompletedProcess:
    """`ray job submit`, again while the head answers that its job agent is not up yet (the dashboard answers
    /api/version before the agent registers; on a loaded machine that takes seconds)."""
    deadline = time.time() + timeout
    while True:
        r = subprocess.run(submit, env=e, cwd=cwd, capture_output=True, text=True, timeout=600)
        if r.returncode == 0 or NO_AGENT_YET not in r.stdout + r.stderr or time.time() > deadline:
            return r
        time.sleep(2)


@pytest.mark.cluster
def test_ray_job_submit_runs_the_search_on_a_head_started_with_rays_cli(tmp_path):
    """The README's job route: a head from `ray start` (the project's venv on PATH, as the cluster YAMLs do),
    `ray job submit -- nas-attn search …` with no --results-dir, results found under ~/nas-attn/results."""
    bin_dir = Path(sys.executable).parent
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix sockets live under it
    e = dict(env(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    e.pop("RAY_ADDRESS", None)
    gcs, dash = _free_port(), _free_port()
    head = subprocess.Popen([str(bin_dir / "ray"), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
                             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                             f"--temp-dir={ray_tmp}", "--disable-usage-stats"],
                            env=e, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(f"http://127.0.0.1:{dash}/api/version", 120)
        runtime_env = json.dumps({"env_vars": {"HOME": str(home), "NAS_ATTN_GIT_COMMIT": "0123abcd"}})
        submit = [str(bin_dir / "ray"), "job", "submit", f"--address=http://127.0.0.1:{dash}",
                  f"--runtime-env-json={runtime_env}", "--", "nas-attn", "search", "--space", "smoke", "--trials", "2",
                  "--run-id", "job"]
        r = _submit_when_the_job_agent_is_ready(submit, e, tmp_path)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head started with --block stops with its process
        head.wait(timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    run = home / "nas-attn" / "results" / "smoke" / "job"
    assert (run / "front.csv").is_file(), r.stdout[-2000:]
    m = json.loads((run / "manifest.json").read_text())
    assert m["git_commit"] == "0123abcd" and m["status"] == "finished"
    assert m["resources"]["cluster"]["CPU"] == 2  # the job joined the head's cluster, not a Ray of its own
    assert len(pd.read_parquet(run / "trials.parquet")) == 2
