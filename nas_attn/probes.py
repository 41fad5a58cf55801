"""The run's probe images: the few fixed test images every trial's heatmaps are drawn on (chosen once per run,
one class after another, and recorded in ``heatmaps/images.npz``), and the exported models are checked on.

Torch-free to import (:meth:`HeatmapImages.tensor` imports torch).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nas_attn.errors import NasAttnError
from nas_attn.fsutil import atomic_target

if TYPE_CHECKING:
    import torch

    from nas_attn.heatmaps import TrialHeatmaps

FOLDER = "heatmaps"
IMAGES = "images.npz"
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


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed ``.npz`` under a temporary name, then rename it into place: a reader (the dashboard
    watching the folder) never sees half a file."""
    with atomic_target(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


#: what reading a damaged ``.npz`` raises (a truncated zip, a missing array, bytes that are not one, an
#: "encrypted" or unknown compression flag; tests/test_damaged_files.py flips bytes of a real one)
UNREADABLE = (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, RuntimeError,
              zipfile.BadZipFile, zlib.error)


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
            raise NasAttnError(f"{path}: damaged ({type(exc).__name__}: {str(exc)[:120]}); delete it and run "
                               f"`nas-attn heatmaps` again to choose the images anew") from None


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
    from nas_attn.records import DatasetRecord
    from nas_attn.runfolder import RunFolder

    info = RunFolder(run_dir, True).read_manifest().dataset or DatasetRecord()
    source = info.source or ""
    root = source if source and Path(source).is_dir() else None
    ds = load_dataset(info.name or "fashion_mnist", root, info.stored_side or input_size, download=False, quiet=True)
    splits = make_splits(ds)
    return heatmap_images(splits.test, splits.mean, splits.std, class_names(ds), input_size, n)
