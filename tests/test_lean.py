"""Triton is left out of the processes that can never run a GPU kernel (issue 23; nas_attn/lean.py): the rule,
what a worker imports with it, and that a local search's Ray workers are told."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from searchutil import REPO

from nas_attn import lean
from nas_attn.cli import run_cli

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None if "triton" not in sys.modules \
    else sys.modules["triton"] is not None


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != lean.ENV}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env={**environ, "PYTHONPATH": str(REPO), **env})


#: what a trial worker imports, then the count of one arch; prints whether Triton came in, and the count
WORKER = """
    import json, sys
    import nas_attn.trial, torchvision.ops  # torchvision.ops imports torch._dynamo, which looks for Triton
    from torch.utils._triton import has_triton_package
    from nas_attn import Arch, complexity
    arch = Arch.from_json('{"backbone": "mobilenetv2", "width": 0.35, "num_classes": 10, "input_size": 32, '
                          '"in_chans": 1, "small_input": true, '
                          '"placements": [{"position": 14, "module": "ulsam", "groups": 2}]}')
    print(json.dumps({"triton_module": repr(sys.modules.get("triton", "never imported"))[:40],
                      "has_triton": has_triton_package(), "cost": complexity(arch)}))
"""


def test_asked_by_the_environment_a_worker_imports_no_triton_and_counts_the_same():
    out = _python(WORKER, **{lean.ENV: "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    left_out = json.loads(out.stdout)
    assert left_out["triton_module"] == "None" and left_out["has_triton"] is False
    assert "triton not found" not in out.stderr  # torch's FLOP counter notice is filtered, nothing else
    kept = json.loads(_python(WORKER, **{lean.ENV: "0"}).stdout)
    assert kept["cost"] == left_out["cost"] and left_out["cost"]["flops"] > 0
    if TRITON_INSTALLED:
        assert kept["has_triton"] is True and kept["triton_module"].startswith("<module 'triton'")


@pytest.mark.parametrize("devices, preset, expected_env, left_out", [
    ([], None, "1", True),                       # no GPU: asked for, here and in the processes started from here
    (["/dev/nvidia0"], None, None, False),        # a GPU may run torch.compile's Triton kernels: kept
    ([], "0", "0", False),                        # the user's own choice is kept
    (["/dev/kfd"], "1", "1", True),               # ... both ways
])
def test_the_rule_of_every_command(monkeypatch, devices, preset, expected_env, left_out):
    monkeypatch.setattr(lean, "gpu_device_files", lambda: devices)
    # set, then removed: monkeypatch records both, so that the pytest process is as it was after the test
    monkeypatch.setitem(sys.modules, "triton", sys.modules.get("triton"))
    monkeypatch.delitem(sys.modules, "triton")
    monkeypatch.setenv(lean.ENV, "unset")
    if preset is None:
        monkeypatch.delenv(lean.ENV)
    else:
        monkeypatch.setenv(lean.ENV, preset)
    assert run_cli(lambda: 0, "nas-attn") == 0
    assert os.environ.get(lean.ENV) == expected_env
    assert (sys.modules.get("triton", "absent") is None) is left_out


def test_a_triton_imported_already_is_kept(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", object())
    monkeypatch.setenv(lean.ENV, "1")
    assert lean.leave_out_triton_if_asked() is False and sys.modules["triton"] is not None


@pytest.mark.skipif(bool(lean.gpu_device_files()), reason="this machine has a GPU: Triton is kept there")
def test_the_ray_workers_of_a_local_search_are_told():
    out = _python("""
        import json, os, sys
        import ray
        from nas_attn.cli import run_cli
        from nas_attn.localray import local_ray_node

        def worker():
            import nas_attn.trial, torchvision.ops
            return os.environ.get("NAS_ATTN_NO_TRITON"), repr(sys.modules.get("triton", "never imported"))

        def search():  # what a search does: the command's rule, then a local Ray node, then its workers
            with local_ray_node() as address:
                ray.init(address=address, log_to_driver=False)
                try:
                    print(json.dumps(ray.get(ray.remote(num_cpus=1)(worker).remote())))
                finally:
                    ray.shutdown()

        sys.exit(run_cli(search, "test"))
    """, RAY_AUTH_MODE="disabled")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["1", "None"]


#: a search run as search.py runs it, then the heavy modules its driver process holds at the end
DRIVER = """
import json, sys
from nas_attn.search import main
status = main(sys.argv[1:])
held = [m for m in ("torch", "torchvision", "timm", "tensorboardX", "pytorch_grad_cam") if m in sys.modules]
print("HELD " + json.dumps(held))
sys.exit(status)
"""


def _driver_search(tmp_path, name: str, extra: str) -> tuple[list[str], dict]:
    from searchutil import TINY_SPACE, env, only_run, write_space

    space = write_space(tmp_path / f"{name}.yaml", TINY_SPACE + extra)
    out = subprocess.run([sys.executable, "-c", DRIVER, "--space", str(space), "--results-dir",
                          str(tmp_path / "results")], capture_output=True, text=True, timeout=600, env=env(),
                         cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    held = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("HELD "))[5:])
    import pandas as pd

    run = only_run(tmp_path / "results", name)
    row = pd.read_parquet(run / "trials.parquet").iloc[0]
    assert (run / "heatmaps").is_dir() and any((run / "heatmaps").iterdir())  # drawn by a Ray task
    return held, {"status": row["status"], "params": int(row["params"]), "flops": int(row["flops"])}


@pytest.mark.slow
def test_a_search_driver_imports_no_torch_unless_a_constraint_needs_the_cost_first(tmp_path):
    """Without cost constraints each trial counts its arch and the heatmaps are drawn by a Ray task: the driver
    never imports torch (issue 23). With ``max_flops`` the driver counts before training, as before; the
    figures recorded are the same either way."""
    held, counted_by_trial = _driver_search(tmp_path, "free", "")
    assert held == []
    held, counted_by_driver = _driver_search(tmp_path, "limited", "constraints: {max_flops: 1000000000}\n")
    assert "torch" in held
    assert counted_by_trial == counted_by_driver and counted_by_trial["status"] == "complete"
