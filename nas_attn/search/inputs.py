"""The dataset a search trains on: loaded from its decoded cache entry, its split checked before Ray starts."""

from __future__ import annotations

from collections.abc import Callable

from nas_attn.data import DataHandle, Dataset, SplitSpec, load_dataset, stored_side
from nas_attn.errors import NasAttnError
from nas_attn.plan import DatasetInfo, SearchOptions
from nas_attn.probes import class_names
from nas_attn.space import RunSettings, SearchSpace


def load_search_data(options: SearchOptions, space: SearchSpace,
                     say: Callable[[str], None] = lambda _: None) -> Dataset:
    """The dataset from its decoded cache entry (decoded now if missing or stale), its split checked."""
    r = space.recipe
    side = stored_side(space.base.input_size, r.augment, r.crop_fraction)
    ds = load_dataset(space.dataset.name, options.data_root, side, cache_dir=options.cache_dir,
                      strict=options.strict_data, quiet=options.quiet)
    say(f"data: {ds.describe()}")
    if ds.cache is not None:
        how = f"decoded in {ds.cache.meta.build_s:.1f} s" if ds.cache.built else "reused"
        if ds.cache.built and ds.cache.why != "not built":  # a damaged or stale entry: say what was wrong
            how += f"; the entry there before was rebuilt: {ds.cache.why}"
        say(f"cache: {ds.cache.path} ({how})")
    for warning in ds.warnings:
        say(f"warning: {warning}")
    for label, variant in (("dataset", space), ("cpu_budget", _cpu_variant(space))):
        if variant is not None:
            _check_split(ds, variant, label)
    return ds


def _cpu_variant(space: SearchSpace) -> SearchSpace | None:
    if space.file.cpu_budget is None:
        return None
    return space.for_run(RunSettings(), cpu_budget=True, num_classes=10, in_chans=space.base.in_chans)


def _check_split(ds: Dataset, space: SearchSpace, label: str) -> None:
    """Refuse a split that leaves a class without training or validation images (before Ray starts)."""
    train, val, _ = data_handle(ds, space).sizes
    need = max(2, ds.num_classes)
    for what, n, key in (("training", train, "train_subset"),
                         ("validation", val, "val_subset / dataset.val_fraction")):
        if n < need:
            raise NasAttnError(f"{space.path}: {label}.{key}: the {what} split has {n} images of "
                               f"{ds.name} (need at least {need}, one per class)")


def data_handle(ds: Dataset, space: SearchSpace, options: SearchOptions | None = None) -> DataHandle:
    """What the trials of ``space`` open: the cache entry, the split, the device-memory budget."""
    split = SplitSpec(space.dataset.val_fraction, space.recipe.seed, space.train_subset, space.val_subset,
                      space.test_subset)
    gb = options.device_data_gb if options is not None else None
    return ds.handle(split, None if gb is None else int(gb * 1e9))


def dataset_info(ds: Dataset) -> DatasetInfo:
    return DatasetInfo(ds.name, ds.source, ds.num_classes, ds.in_chans, str(ds.cache.path) if ds.cache else "",
                       ds.side, class_names(ds))
