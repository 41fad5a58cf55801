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

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

FOLDER = "heatmaps"
IMAGES = "images.npz"
#: the last feature layer's label among a trial's heatmap layers
FEATURES = "features"
#: the class names of the named datasets, in label order (CIFAR-100: its ``fine_label_names``, which are sorted)
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar100": tuple(
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
        "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
        "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
        "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
        "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
        "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
        "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()),
}


def class_names(dataset) -> tuple[str, ...]:
    """A :class:`~nas_attn.data.Dataset`'s class names: an image folder's class folders, else the known names."""
    classes = tuple(dataset.cache.meta.classes) if dataset.cache is not None else ()
    names = classes or CLASS_NAMES.get(dataset.name, ())
    return names if len(names) == dataset.num_classes else ()


#: what reading a damaged ``.npz`` raises (a truncated zip, a missing array, bytes that are not one)
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed ``.npz`` under a temporary name, then rename it into place: a reader (the dashboard
    watching the folder) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


@dataclass(frozen=True)
class HeatmapImages:
    """The fixed test images of a run's heatmaps."""

    indices: np.ndarray  #: into the test set
    images: np.ndarray  #: uint8 (N, C, H, W), as the trials saw them
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()

    def tensor(self) -> torch.Tensor:
        """The images normalised as the trained models expect them."""
        import torch

        x = torch.from_numpy(self.images.astype(np.float32) / 255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        return (x - mean) / torch.tensor(self.std).view(1, -1, 1, 1)

    def name(self, label: int) -> str:
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def drawn_on(self, heatmaps: TrialHeatmaps) -> bool:
        """Whether ``heatmaps`` were made on these images (files older than the recorded indices: by count)."""
        if heatmaps.indices is None:
            return heatmaps.maps.shape[1] == len(self.indices)
        return np.array_equal(heatmaps.indices, self.indices)

    def save(self, run_dir: Path) -> None:
        folder = Path(run_dir) / FOLDER
        folder.mkdir(exist_ok=True)
        save_npz(folder / IMAGES, indices=self.indices, images=self.images, labels=self.labels,
                 mean=np.array(self.mean), std=np.array(self.std),
                 class_names=np.array(json.dumps(list(self.class_names))))

    @classmethod
    def load(cls, run_dir: Path) -> HeatmapImages | None:
        path = Path(run_dir) / FOLDER / IMAGES
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                return cls(z["indices"], z["images"], z["labels"], tuple(z["mean"].tolist()),
                           tuple(z["std"].tolist()), tuple(json.loads(str(z["class_names"]))))
        except UNREADABLE as exc:
            from nas_attn.errors import NasAttnError

            raise NasAttnError(f"{path}: damaged ({type(exc).__name__}: {str(exc)[:120]}); delete it and run "
                               f"`nas-attn heatmaps` again to choose the images anew") from None


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


def choose_images(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` test-set indices, stratified: one image of each class in turn (seeded), until there are ``n``."""
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(labels)):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(pool.pop())
    return np.array(chosen)


def heatmap_images(test, mean, std, names: tuple[str, ...], input_size: int, n: int = 8) -> HeatmapImages:
    """``n`` stratified images of ``test`` (a :class:`~nas_attn.data.ImageSet`: only those rows are read),
    centre-cropped to ``input_size`` as evaluation sees them; ``names`` are the class names (may be empty)."""
    idx = choose_images(test.labels, n)
    x = test.read(idx)
    top, left = (x.shape[-2] - input_size + 1) // 2, (x.shape[-1] - input_size + 1) // 2  # as CenterCrop rounds
    x = x[..., top:top + input_size, left:left + input_size]
    return HeatmapImages(idx, np.ascontiguousarray(x), test.labels[idx], tuple(mean), tuple(std),
                         tuple(names))


def run_heatmap_images(run_dir: Path, input_size: int, n: int) -> HeatmapImages:
    """Heatmap images from the dataset a run's manifest names (its cache entry, decoded again if missing)."""
    from nas_attn.data import load_dataset, make_splits
    from nas_attn.runfolder import RunFolder

    info = RunFolder(run_dir, True).read_manifest().get("dataset") or {}
    name, source = info.get("name", "fashion_mnist"), info.get("source", "")
    root = source if source and Path(source).is_dir() else None
    ds = load_dataset(name, root, info.get("stored_side") or input_size, download=False, quiet=True)
    splits = make_splits(ds)
    return heatmap_images(splits.test, splits.mean, splits.std, class_names(ds), input_size, n)


def target_layers(model) -> list[tuple[str, Any]]:
    """(label, module) of each layer a trial's heatmaps are taken at: the last feature layer, then each placed
    module (``build_model`` records them) under its placement's short form."""
    return [(FEATURES, model.layers[-1])] + [(pl.short(), module) for pl, module in getattr(model, "placed", ())]


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
    from nas_attn.export import load_trial

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
    """The trials a run's heatmaps are made for: its vanilla trial and its front (from the trials table)."""
    from nas_attn.results import front_table

    vanilla = trials[trials["vanilla"].astype(bool) & (trials["status"] == "complete")]["trial"]
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
    from nas_attn.errors import NasAttnError
    from nas_attn.export import find_trial

    run_dir = Path(run_dir).expanduser().resolve()
    trials = trials if trials else default_trials(run_dir)
    if not trials:
        raise NasAttnError(f"{run_dir}: no complete trial to make heatmaps of")
    arch = find_trial(run_dir, trials[0]).arch
    images = HeatmapImages.load(run_dir)
    if images is None or len(images.labels) != n:
        images = run_heatmap_images(run_dir, arch.input_size, n)
    return make_heatmaps(run_dir, trials, images, say)
