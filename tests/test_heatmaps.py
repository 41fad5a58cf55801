"""Heatmaps (grad-cam's Grad-CAM) made at the end of a real smoke search, and on demand."""

import subprocess
import sys

import numpy as np
import pandas as pd
from searchutil import REPO, env

from nas_attn.heatmaps import FEATURES, TrialHeatmaps, compute_heatmaps
from nas_attn.probes import HeatmapImages, choose_images


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
    """On other images than the search's (4, not 8): the trials that had heatmaps are drawn again on the new
    images too, so the dashboard shows every trial beside the vanilla one on the same images."""
    import shutil

    from nas_attn.dashboard.page import _heatmap_payload
    from nas_attn.dashboard.rundata import load_run

    run, _ = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "tune").unlink() if (copy / "tune").is_symlink() else None
    had = {int(p.stem) for p in (copy / "heatmaps").glob("[0-9]*.npz")}
    assert len(had) >= 2  # the vanilla trial and the front
    asked = max(had)
    (copy / "heatmaps" / f"{asked}.npz").unlink()
    r = subprocess.run([sys.executable, "-m", "nas_attn", "heatmaps", copy, "--trials", str(asked), "--images", "4"],
                       capture_output=True, text=True, timeout=300, env=env(), cwd=REPO)
    assert r.returncode == 0, r.stderr
    made = {int(p.stem) for p in (copy / "heatmaps").glob("[0-9]*.npz")}
    assert made == had  # the one asked for, and the others drawn again on the new images
    images = HeatmapImages.load(copy)
    assert len(images.indices) == 4
    for t in made:
        h = TrialHeatmaps.load(copy, t)
        assert h.maps.shape[1] == 4 and (h.indices == images.indices).all() and images.drawn_on(h)
    data = load_run(copy)
    assert set(data.heatmaps) == made
    payload = _heatmap_payload(data)  # what the page inlines: every trial's maps over the same four images
    assert len(payload["images"]) == 4 and all(len(t["pngs"][0]) == 4 for t in payload["trials"].values())


def test_heatmaps_made_on_other_images_are_left_out_of_the_dashboard(tmp_path):
    images = HeatmapImages(np.arange(3), np.zeros((3, 1, 8, 8), np.uint8), np.array([0, 1, 2]), (0.5,), (0.25,))
    other = TrialHeatmaps(1, ("features",), np.zeros((1, 3, 8, 8), np.uint8), np.zeros(3, int), np.ones(3),
                          np.array([5, 6, 7]))
    older = TrialHeatmaps(2, ("features",), np.zeros((1, 2, 8, 8), np.uint8), np.zeros(2, int), np.ones(2))
    same = TrialHeatmaps(3, ("features",), np.zeros((1, 3, 8, 8), np.uint8), np.zeros(3, int), np.ones(3))
    assert not images.drawn_on(other) and not images.drawn_on(older) and images.drawn_on(same)
    (tmp_path / "heatmaps").mkdir()
    other.save(tmp_path)
    assert (TrialHeatmaps.load(tmp_path, 1).indices == [5, 6, 7]).all()


def test_class_names_come_from_the_dataset(tmp_path):
    from imagetrees import make_tree

    from nas_attn.data import load_dataset
    from nas_attn.probes import CLASS_NAMES, class_names

    make_tree(tmp_path / "tree", classes=3, train=2, val=1)
    ds = load_dataset("imagefolder", tmp_path / "tree", 32, cache_dir=tmp_path / "cache", workers=1, quiet=True)
    assert class_names(ds) == tuple(sorted(p.name for p in (tmp_path / "tree" / "train").iterdir() if any(p.iterdir())))
    assert len(CLASS_NAMES["cifar100"]) == 100 and CLASS_NAMES["cifar100"][-1] == "worm"


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


def test_heatmaps_that_cannot_all_be_drawn_again_write_nothing(tmp_path):
    """The committed example keeps no weights: asking it for heatmaps on 4 images fails in one line, and its
    heatmaps on 8 images stay as they were (the dashboard still shows them)."""
    import shutil

    import pytest

    from nas_attn.dashboard.rundata import load_run
    from nas_attn.errors import NasAttnError
    from nas_attn.heatmaps import heatmaps_command

    run = tmp_path / "run"
    shutil.copytree(REPO / "results" / "examples" / "mobilenetv2_ulsam-cpu-budget", run)
    before = {p.name: p.read_bytes() for p in (run / "heatmaps").iterdir()}
    with pytest.raises(NasAttnError, match="trial 1"):
        heatmaps_command(run, [1], 4)
    assert {p.name: p.read_bytes() for p in (run / "heatmaps").iterdir()} == before
    assert sorted(load_run(run).heatmaps) == sorted(int(n[:-4]) for n in before if n[:-4].isdigit())


def test_a_damaged_heatmap_file_is_a_one_line_dashboard_error(tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(REPO / "results" / "examples" / "mobilenetv2_ulsam-cpu-budget", run)
    victim = next((run / "heatmaps").glob("[0-9]*.npz"))
    victim.write_bytes(victim.read_bytes()[:100])
    r = subprocess.run([sys.executable, "-m", "nas_attn", "dashboard", run, "--out", tmp_path / "p.html"],
                       capture_output=True, text=True, timeout=120, env=env(), cwd=REPO)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "heatmaps: unreadable (BadZipFile" in r.stderr and not (tmp_path / "p.html").exists()
