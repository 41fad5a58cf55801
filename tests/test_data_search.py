"""Searches on ImageFolder trees, as a user runs them: search.py on generated 224-px images."""

import json

import numpy as np
import pandas as pd
import pytest
from imagetrees import make_tree
from searchutil import only_run, search


def test_bad_data_is_one_line_exit_2_before_anything_runs(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, classes=2, train=3, val=1, corrupt=True, empty_class=False)
    results = tmp_path / "results"
    r = search("--space", "smoke", "--dataset", "imagefolder", "--data-root", root, "--strict-data",
               "--results-dir", results, "--cache-dir", tmp_path / "cache", timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "zz_truncated.jpg: unreadable image" in r.stderr
    assert not results.exists() and not any(p.is_dir() for p in (tmp_path / "cache").iterdir())
    r = search("--space", "mobilenetv2_ulsam_finegrained", "--results-dir", results, timeout=120)
    assert r.returncode == 2 and "imagefolder: --data-root must hold train/ and val/" in r.stderr
    (tmp_path / "file").write_text("x")
    r = search("--space", "smoke", "--cache-dir", tmp_path / "file", "--results-dir", results, timeout=120)
    assert r.returncode == 2 and "--cache-dir" in r.stderr and "not a directory" in r.stderr


@pytest.mark.slow
def test_finegrained_space_searches_a_224px_tree_end_to_end_on_the_cpu_budget(tmp_path):
    root, results, cache = tmp_path / "tree", tmp_path / "results", tmp_path / "cache"
    make_tree(root, classes=4, train=10, val=3, sizes=(224, 320), corrupt=True, empty_class=True)
    r = search("--space", "mobilenetv2_ulsam_finegrained", "--dataset", "imagefolder", "--data-root", root,
               "--results-dir", results, "--cache-dir", cache, "--trials", 2, "--device-data-gb", 0, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "zz_truncated.jpg: skipped, unreadable" in r.stdout and "class_zz_empty: empty class folder" in r.stdout
    assert "no GPU: using the space's cpu_budget" in r.stdout and "cache: " in r.stdout
    run = only_run(results, "mobilenetv2_ulsam_finegrained")
    trials = pd.read_parquet(run / "trials.parquet")
    assert trials["status"].tolist() == ["complete", "complete"]
    history = pd.read_parquet(run / "history.parquet")
    assert len(history) == 2 and history["val_top5"].between(0, 1).all() and (history["val_top5"] == 1).all()
    manifest = json.loads((run / "manifest.json").read_text())
    data = manifest["dataset"]
    assert data["stored_side"] == 256 and data["input_size"] == 224 and data["test"] == 12
    assert data["train"] + data["val"] == 40 and data["cache"].startswith(str(cache))
    assert manifest["recipe"]["augment"] == "random_resized_crop"
    assert (trials["val_top5_final"] == 1).all()  # four classes: the right one is always among the top five
    front = pd.read_csv(run / "front.csv")
    assert len(front) >= 1 and front["test_acc"].between(0, 1).all() and (front["test_top5"] == 1).all()
    with np.load(run / "heatmaps" / "images.npz") as z:  # centre crops of the 256-px stored images
        assert z["images"].shape[1:] == (3, 224, 224)
    # one entry, decoded once, opened by the driver and every trial (reuse by a later run: test_data_cache.py)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
