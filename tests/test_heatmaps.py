"""Heatmaps (grad-cam's Grad-CAM) made at the end of a real smoke search, and on demand."""

import subprocess
import sys

import numpy as np
import pandas as pd
from searchutil import REPO, env

from nas_attn.heatmaps import FEATURES, HeatmapImages, TrialHeatmaps, choose_images, compute_heatmaps


def test_the_search_leaves_heatmaps_of_vanilla_and_front(smoke_run):
    run, r = smoke_run
    trials = pd.read_parquet(run / "trials.parquet")
    front = set(pd.read_csv(run / "front.csv")["trial"])
    vanilla = set(trials[trials["vanilla"]]["trial"])
    images = HeatmapImages.load(run)
    assert images is not None and len(images.labels) == 8 and images.images.shape[1:] == (1, 32, 32)
    assert len(set(images.labels.tolist())) == 8  # stratified: eight images, eight classes
    assert images.class_names[0] == "T-shirt/top" and "heatmaps: trials" in r.stdout
    for trial in front | vanilla:
        h = TrialHeatmaps.load(run, int(trial))
        arch_placements = trials.set_index("trial").loc[trial, "n_placements"]
        assert h.layers[0] == FEATURES and len(h.layers) == 1 + arch_placements  # one per placed module too
        assert h.maps.shape == (len(h.layers), 8, 32, 32) and h.maps.dtype == np.uint8  # the image's size
        assert h.maps.max() > 0 and (run / "heatmaps" / f"{trial}.npz").stat().st_size < 1_000_000
        assert ((0 <= h.predicted) & (h.predicted < 10)).all() and ((0 < h.confidence) & (h.confidence <= 1)).all()


def test_two_different_archs_look_at_different_places(smoke_run):
    run, _ = smoke_run
    maps = {int(p.stem): TrialHeatmaps.load(run, int(p.stem)).maps[0] for p in (run / "heatmaps").glob("[0-9]*.npz")}
    assert len(maps) >= 2, "the smoke run's front and vanilla give at least two trials"
    a, b = list(maps.values())[:2]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1  # not the same heatmaps


def test_heatmaps_command_makes_them_for_chosen_trials(smoke_run, tmp_path):
    import shutil

    run, _ = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("heatmaps"))
    (copy / "tune").unlink() if (copy / "tune").is_symlink() else None
    trials = pd.read_parquet(copy / "trials.parquet")
    some = [int(t) for t in trials[trials["status"] == "complete"]["trial"][:2]]
    r = subprocess.run([sys.executable, "-m", "nas_attn", "heatmaps", copy, "--trials", *map(str, some), "--images",
                        "4"], capture_output=True, text=True, timeout=300, env=env(), cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (copy / "heatmaps").iterdir()) == sorted([f"{t}.npz" for t in some] + ["images.npz"])
    assert TrialHeatmaps.load(copy, some[0]).maps.shape[1] == 4


def test_choose_images_is_stratified_and_seeded():
    labels = np.repeat(np.arange(5), 20)
    chosen = choose_images(labels, 7)
    assert labels[chosen].tolist() == [0, 1, 2, 3, 4, 0, 1] and (chosen == choose_images(labels, 7)).all()


def test_compute_heatmaps_has_one_map_per_placed_module():
    import torch

    from nas_attn import Arch, Placement, build_model

    arch = Arch("resnet18", num_classes=10, input_size=32, in_chans=3, small_input=True,
                placements=[Placement(2, "se", "inside"), Placement(4, "eca", "parallel"), Placement(8, "cbam")])
    torch.manual_seed(0)
    images = HeatmapImages(np.arange(3), np.random.default_rng(0).integers(0, 255, (3, 3, 32, 32), dtype=np.uint8),
                           np.array([0, 1, 2]), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    h = compute_heatmaps(build_model(arch), 7, images)
    assert h.layers == (FEATURES, "2:se/in", "4:eca/par", "8:1 cbam") and h.maps.shape == (4, 3, 32, 32)
