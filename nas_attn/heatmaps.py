"""Where a trained arch looks: class-activation heatmaps of a few fixed test images (the papers' figures:
ULSAM Fig. 4, LADNet Figs. 4–5, LGAM Fig. 5, CSM Fig. 7).

Grad-CAM comes from the maintained ``grad-cam`` package. For each trial it is taken at the last feature layer
and at the output of each placed module, for the class the trial predicts, on the same N test images for
every trial (chosen once per run, one class after another, and recorded). Stored small in the run folder:

- ``heatmaps/images.npz``: the chosen images (uint8, as trained on), their test-set indices, labels, class
  names, and the normalisation the models expect;
- ``heatmaps/<trial>.npz``: one uint8 map per (layer, image) at the image's size, the predicted classes and
  their probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas_attn.probes import FOLDER, UNREADABLE, HeatmapImages, run_heatmap_images, save_npz

#: the last feature layer's label among a trial's heatmap layers
FEATURES = "features"


@dataclass(frozen=True)
class TrialHeatmaps:
    """One trial's heatmaps: ``maps[l, i]`` is layer ``layers[l]`` on image ``i`` (uint8, the image's size)."""

    trial: int
    layers: tuple[str, ...]
    maps: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    #: the test-set indices of the images they were made on (``None`` in files written before it was recorded)
    indices: np.ndarray | None = None

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / FOLDER / f"{self.trial}.npz"
        path.parent.mkdir(exist_ok=True)
        extra = {} if self.indices is None else {"indices": self.indices}
        save_npz(path, layers=np.array(list(self.layers)), maps=self.maps, predicted=self.predicted,
                 confidence=self.confidence, **extra)
        return path

    @classmethod
    def load(cls, run_dir: Path, trial: int) -> TrialHeatmaps | None:
        path = Path(run_dir) / FOLDER / f"{trial}.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            return cls(trial, tuple(str(s) for s in z["layers"]), z["maps"], z["predicted"], z["confidence"],
                       z["indices"] if "indices" in z.files else None)


def target_layers(model) -> list[tuple[str, Any]]:
    """(label, module) of each layer a trial's heatmaps are taken at: the last feature layer, then each placed
    module (``build_model`` records them) under its placement's short form."""
    placed = [(pl.short(), module) for pl, module in getattr(model, "placed", ())]
    return [(FEATURES, model.get_submodule(model.features_path))] + placed


def compute_heatmaps(model, trial: int, images: HeatmapImages) -> TrialHeatmaps:
    """Grad-CAM of ``model`` (trained, in eval mode) on ``images``, for the class it predicts."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    x = images.tensor()
    with torch.no_grad():
        probabilities = model(x).softmax(1)
    predicted = probabilities.argmax(1)
    targets = [ClassifierOutputTarget(int(c)) for c in predicted]
    layers, maps = [], []
    for label, layer in target_layers(model):
        with GradCAM(model=model, target_layers=[layer]) as cam:
            maps.append(np.round(cam(input_tensor=x, targets=targets) * 255).astype(np.uint8))
        layers.append(label)
    confidence = probabilities.gather(1, predicted[:, None])[:, 0]
    return TrialHeatmaps(trial, tuple(layers), np.stack(maps), predicted.numpy(), confidence.numpy(), images.indices)


def stored_trials(run_dir: Path) -> list[int]:
    """The trials that have heatmaps in the run folder."""
    return sorted(int(p.stem) for p in (Path(run_dir) / FOLDER).glob("*.npz") if p.stem.isdigit())


def _drawn_on(run_dir: Path, trial: int, images: HeatmapImages) -> bool:
    try:
        return images.drawn_on(TrialHeatmaps.load(run_dir, trial))
    except UNREADABLE:  # a damaged file is drawn again like one on other images
        return False


def make_heatmaps(run_dir: Path, trials: list[int], images: HeatmapImages,
                  say: Callable[[str], None] | None = None) -> list[Path]:
    """Heatmaps of each of ``trials`` (their saved weights) on ``images``, written to the run folder.

    Heatmaps already stored that were made on other images are made again on these, so that every trial in the
    folder (the vanilla one above all, which the dashboard shows beside each) is drawn on the same images.
    """
    from nas_attn.errors import NasAttnError
    from nas_attn.trained import load_trial

    stale = [t for t in stored_trials(run_dir) if not _drawn_on(run_dir, t, images)]
    made = []
    # all in memory first, the trials asked for first: a trial whose weights are missing writes nothing
    todo = [*sorted(set(trials)), *sorted(set(stale) - set(trials))]
    for done, t in enumerate(todo, 1):
        try:
            made.append(compute_heatmaps(load_trial(run_dir, t), t, images))
            if say is not None:  # each trial takes seconds to minutes on a CPU: show that it moves
                say(f"heatmaps: trial {t} done ({done}/{len(todo)})")
        except NasAttnError as exc:
            if t in trials:
                raise
            raise NasAttnError(f"trial {t} has heatmaps on the run's other images and cannot be drawn again on "
                               f"these ({exc}); nothing written: keep the run's number of images (--images)") \
                from None
    paths = [h.save(run_dir) for h in made]
    images.save(run_dir)  # last: until then the folder's images are those its other heatmaps were drawn on
    return paths


def overlay(image: np.ndarray, heatmap: np.ndarray | None) -> np.ndarray:
    """An RGB uint8 picture: the image alone, or with ``heatmap`` over it (grad-cam's own colouring)."""
    rgb = image.transpose(1, 2, 0)
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb[..., :3]
    if heatmap is None:
        return np.ascontiguousarray(rgb)
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(rgb.astype(np.float32) / 255.0, heatmap.astype(np.float32) / 255.0, use_rgb=True)


def heatmap_trials(trials) -> list[int]:
    """The trials a run's heatmaps are made for: its vanilla trial and its front (from the trials table), both
    trained (a prediction's weights, if any, are a fine-tuning or a supernet path)."""
    from nas_attn.results import front_table, trained_trials

    trained = trained_trials(trials)
    vanilla = trained[trained["vanilla"].astype(bool) & (trained["status"] == "complete")]["trial"]
    return sorted({*map(int, vanilla), *map(int, front_table(trials)["trial"])})


def default_trials(run_dir: Path) -> list[int]:
    from nas_attn.results import load_front_eval, open_run_study, trials_table
    from nas_attn.runfolder import RunFolder

    study = open_run_study(Path(run_dir), RunFolder(Path(run_dir), True).read_manifest())
    return heatmap_trials(trials_table(study, load_front_eval(run_dir))) if study is not None else []


def heatmaps_command(run_dir: str | Path, trials: list[int] | None, n: int,
                     say: Callable[[str], None] | None = None) -> list[Path]:
    """``nas-attn heatmaps``: heatmaps of ``trials`` (default: vanilla and front) on ``n`` test images (the
    run's recorded images when there are ``n`` of them, else chosen again from its dataset's test set, and then
    the trials that already had heatmaps are drawn again on the new images too)."""
    from nas_attn.checkpoints import check_checkpoint
    from nas_attn.errors import NasAttnError
    from nas_attn.trained import find_trial

    run_dir = Path(run_dir).expanduser().resolve()
    trials = trials if trials else default_trials(run_dir)
    if not trials:
        raise NasAttnError(f"{run_dir}: no complete trial to make heatmaps of")
    found = [find_trial(run_dir, t) for t in trials]
    for f in found:  # a damaged checkpoint told before torch is imported or test images are read
        check_checkpoint(f.checkpoint, f.run_dir, f"{f.run_dir}: trial {f.trial}", f.arch)
    arch = found[0].arch
    images = HeatmapImages.load(run_dir)
    if images is None or len(images.labels) != n:
        images = run_heatmap_images(run_dir, arch.input_size, n)
    return make_heatmaps(run_dir, trials, images, say)
