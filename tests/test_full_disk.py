"""A full disk under ``--storage-path`` (where Ray Tune keeps the trials' checkpoints) stops the search as a
full run folder does: one line, exit 2, the resume command; the trial that could not be saved is not counted
and runs again once there is room (issue 22). The disk is a real, small tmpfs (needs root; skipped otherwise)."""

import json
import shlex
import subprocess
import textwrap

import pandas as pd
import pytest
from optuna.trial import TrialState
from searchutil import env, load_study, mount_tmpfs, search, write_space

from nas_attn.results import count_finished

SPACE = """
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 300, val_subset: 100, test_subset: 100}
search: {positions: [14, 17], modules: [none, ulsam], groups: [2, 4], ops: [insert]}
sampler: {name: random, seed: 0}
budget: {trials: 2, concurrency: 1}
resources: {cpu: 1, gpu: 0}
train: {epochs: 1, batch_size: 32, lr: 0.05, bn_recalibration: 0}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB tmpfs: room for Ray Tune's experiment files, not for a checkpoint (about 1.6 MB here)."""
    mount = tmp_path / "tune"
    if not mount_tmpfs(mount, "1m"):
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_checkpoint_disk_stops_the_search_and_the_resume_runs_what_it_could_not_save(tmp_path, small_disk):
    space = write_space(tmp_path / "fulldisk.yaml", textwrap.dedent(SPACE))
    results = tmp_path / "results"
    run = results / "fulldisk" / "r1"
    r = search("--space", space, "--results-dir", results, "--run-id", "r1", "--storage-path", small_disk, "--quiet")
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not save its checkpoint" in lines[0] and "No space left on device" in lines[0]
    assert "free space, then resume with: " in lines[0] and "Traceback" not in r.stderr
    study = load_study(run, "fulldisk")
    assert count_finished(study) == 0  # the trial our disk failed is not the arch's failure: not counted
    assert not [t for t in study.trials if t.state == TrialState.COMPLETE]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "could not save its checkpoint" in manifest["attempts"][-1]["reason"]

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)  # space freed
    resume = shlex.split(lines[0].split("resume with: ", 1)[1])
    r = subprocess.run(resume + ["--quiet"], capture_output=True, text=True, timeout=600, env=env())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    study = load_study(run, "fulldisk")
    assert count_finished(study) == 2
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "complete").all() and trials["checkpoint"].notna().all()
