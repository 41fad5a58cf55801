import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_FMNIST = REPO.parent / "shared" / "data" / "fashion-mnist"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One real search of the smoke space (Ray local, Optuna, Fashion-MNIST), shared by the tests that read it."""
    from searchutil import only_run, search

    results = tmp_path_factory.mktemp("results")
    r = search("--space", "smoke", "--results-dir", results, "--reevaluate-front", 2)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return only_run(results, "smoke"), r
