"""The decoded-dataset cache, CIFAR archives, ImageFolder trees, on-device crops, streaming, schedules, top-5."""

import math
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading

import numpy as np
import pytest
import torch
from conftest import REPO
from imagetrees import make_cifar_archive, make_tree
from PIL import Image

from nas_attn.data import DataSource, ImageSet, SplitSpec, load_dataset, make_splits, stored_side
from nas_attn.data.augment import centre_crop, random_resized_crop, resize_boxes, sample_boxes
from nas_attn.data.decode import decode_image
from nas_attn.data.loader import DeviceData, StreamedImages, batch_slices
from nas_attn.errors import DataError
from nas_attn.recipe import Recipe
from nas_attn.train import correct_counts, make_scheduler

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    return root, make_tree(root)


def _files_in_order(files):
    """The tree's images in ImageFolder order (class, then name), the corrupt one left out."""
    return sorted(files, key=lambda p: (p.parent.name, p.name))


def test_tree_decoded_once_on_all_cores_then_reused(tree, tmp_path, monkeypatch):
    root, files = tree
    monkeypatch.setattr("nas_attn.data.decode.CHUNK", 4)  # several tasks, so that the process pool is used
    ds = load_dataset("imagefolder", root, 48, cache_dir=tmp_path, workers=2, quiet=True)
    assert ds.cache.built and ds.train_x.shape == (24, 3, 48, 48) and ds.test_x.shape == (9, 3, 48, 48)
    assert ds.num_classes == 3 and np.bincount(ds.train_y).tolist() == [8, 8, 8]  # the empty class left out
    assert any("zz_truncated.jpg: skipped, unreadable" in w for w in ds.warnings)
    assert any("class_zz_empty: empty class folder, class left out" in w for w in ds.warnings)
    stamps = {p.name: p.stat().st_mtime_ns for p in ds.cache.path.iterdir()}
    again = load_dataset("imagefolder", root, 48, cache_dir=tmp_path, quiet=True)
    assert not again.cache.built and again.cache.path == ds.cache.path
    assert {p.name: p.stat().st_mtime_ns for p in again.cache.path.iterdir()} == stamps  # nothing rewritten
    assert np.array_equal(again.train_x, ds.train_x) and again.warnings == ds.warnings
    assert isinstance(again.train_x, np.memmap)


def test_cache_holds_what_a_direct_decode_gives(tree, tmp_path):
    root, files = tree
    ds = load_dataset("imagefolder", root, 48, cache_dir=tmp_path, quiet=True)
    for split, x, y in (("train", ds.train_x, ds.train_y), ("val", ds.test_x, ds.test_y)):
        paths = _files_in_order(files[split])
        assert len(paths) == len(y)
        for i, path in enumerate(paths):
            assert np.array_equal(x[i], decode_image(path, 48)), path
            assert y[i] == int(path.parent.name.split("_")[1])


@pytest.mark.parametrize("name, mode", [("a.jpg", "RGB"), ("b.png", "L"), ("c.png", "P"), ("d.png", "RGBA"),
                                        ("e.jpg", "CMYK"), ("f.jpg", "RGB-tall")])
def test_decoding_gives_torchvisions_resize_and_centre_crop(tmp_path, name, mode):
    from torchvision import transforms

    yy, xx = np.mgrid[0:300, 0:400].astype(np.float32)
    smooth = np.stack([128 + 100 * np.sin(xx / 37), 128 + 100 * np.cos(yy / 23), (xx + yy) / 3], -1)
    image = Image.fromarray(smooth.clip(0, 255).astype(np.uint8))
    image = image.crop((0, 0, 170, 300)) if mode == "RGB-tall" else image.convert(mode)
    image.save(tmp_path / name)
    tf = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64), transforms.PILToTensor()])
    with Image.open(tmp_path / name) as im:
        reference = tf(im.convert("RGB")).numpy().astype(int)
    for draft in (True, False):  # the JPEG decoder's own downscaling (x4 here) changes little
        ours = decode_image(tmp_path / name, 64, draft=draft).astype(int)
        assert ours.shape == (3, 64, 64)
        assert np.abs(ours - reference).mean() < 2.5
        assert np.abs(ours - reference[:, :, ::-1]).mean() > 15  # the comparison can tell a mirror image


def test_truncated_and_stale_entries_are_rebuilt(tmp_path):
    root = tmp_path / "tree"
    files = make_tree(root, classes=2, train=4, val=2, corrupt=False, empty_class=False)
    ds = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    first, decoded = ds.cache.path, np.array(ds.train_x)
    del ds  # its memory map would fault on the pages cut off below
    with open(first / "train_x.uint8", "r+b") as f:
        f.truncate(1000)
    rebuilt = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    assert rebuilt.cache.built and rebuilt.cache.path == first and np.array_equal(rebuilt.train_x, decoded)
    picture = files["train"][0]
    Image.new("RGB", (50, 40), (250, 10, 10)).save(picture, "PNG" if picture.suffix == ".png" else "JPEG")
    stale = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    assert stale.cache.built and stale.cache.path != first and not first.exists()  # the stale entry is gone
    assert stale.train_x[0, 0].mean() > 200


def _overwrite_middle(path, count=64 << 10):
    """``count`` random bytes written over the middle of ``path``, in place (its size unchanged)."""
    size = path.stat().st_size
    assert size >= 3 * count, size  # the middle, away from the rows a sample would pick (first, last)
    with open(path, "r+b") as f:
        f.seek(size // 2 - count // 2)
        f.write(np.random.default_rng(0).integers(0, 256, count, dtype=np.uint8).tobytes())
    return size


def test_64_kib_overwritten_mid_array_is_caught_at_the_next_open(tmp_path):
    """Issue 22 part 4: no sampled fingerprint to slip between; every chunk has a checksum."""
    root = tmp_path / "tree"
    make_tree(root, classes=3, train=12, val=2, corrupt=False, empty_class=False)
    ds = load_dataset("imagefolder", root, 64, cache_dir=tmp_path / "cache", quiet=True)
    entry, decoded = ds.cache.path, np.array(ds.train_x)
    assert not load_dataset("imagefolder", root, 64, cache_dir=tmp_path / "cache", quiet=True).cache.built
    del ds
    images = entry / "train_x.uint8"
    size = _overwrite_middle(images)
    with pytest.raises(DataError) as err:  # under --strict-data: one line, nothing rebuilt
        load_dataset("imagefolder", root, 64, cache_dir=tmp_path / "cache", quiet=True, strict=True)
    line = str(err.value)
    assert "\n" not in line and "train_x.uint8" in line and "(damaged)" in line and "--strict-data" in line, line
    assert not np.array_equal(np.fromfile(images, np.uint8).reshape(decoded.shape), decoded)  # left as it was
    rebuilt = load_dataset("imagefolder", root, 64, cache_dir=tmp_path / "cache", quiet=True)
    assert rebuilt.cache.built and rebuilt.cache.path == entry and images.stat().st_size == size
    assert rebuilt.cache.why.startswith("train_x.uint8: bytes ") and rebuilt.cache.why.endswith("(damaged)")
    assert np.array_equal(rebuilt.train_x, decoded)
    del rebuilt
    assert not load_dataset("imagefolder", root, 64, cache_dir=tmp_path / "cache", quiet=True).cache.built


def test_an_entry_copied_elsewhere_is_verified_once_then_trusted(tmp_path):
    """The ``.verified`` stamp: a copied entry (new inodes) is read in full once, then opened by its stamp."""
    from nas_attn.data import cache as cache_mod

    root = tmp_path / "tree"
    make_tree(root, classes=2, train=3, val=1, corrupt=False, empty_class=False)
    ds = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    entry, key = ds.cache.path, ds.cache.meta.key
    del ds
    copy = tmp_path / "copy"
    shutil.copytree(entry, copy)
    assert not cache_mod._stamped(copy, cache_mod.read_entry(entry, key)[0])  # other inodes: not trusted
    meta, why = cache_mod.read_entry(copy, key)
    assert meta is not None and why == "" and cache_mod._stamped(copy, meta)  # verified whole, then stamped
    (copy / "test_y.int64").write_bytes((copy / "test_y.int64").read_bytes())  # same bytes, a new ctime
    assert not cache_mod._stamped(copy, meta) and cache_mod.read_entry(copy, key)[0] is not None


def test_an_entry_zeroed_or_altered_at_its_right_size_is_rebuilt(tmp_path):
    root = tmp_path / "tree"
    files = make_tree(root, classes=2, train=4, val=2, corrupt=False, empty_class=False)
    ds = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    entry, labels = ds.cache.path, np.array(ds.train_y)
    assert set(ds.cache.meta.checksums) == {"train_x", "train_y", "test_x", "test_y"}
    del ds
    images = entry / "train_x.uint8"
    size = images.stat().st_size
    images.write_bytes(bytes(size))  # what a power loss before write-back can leave: the right size, zeros
    rebuilt = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    assert rebuilt.cache.built and rebuilt.cache.path == entry and "train_x.uint8" in rebuilt.cache.why
    assert "(damaged)" in rebuilt.cache.why and images.stat().st_size == size
    for i, path in enumerate(_files_in_order(files["train"])):
        assert np.array_equal(rebuilt.train_x[i], decode_image(path, 32)), path
    del rebuilt
    altered = labels.astype(np.int64)
    altered[-1] = 1 - altered[-1]
    (entry / "train_y.int64").write_bytes(altered.tobytes())
    again = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    assert again.cache.built and "train_y.int64: bytes 0-" in again.cache.why and "(damaged)" in again.cache.why
    assert np.array_equal(again.train_y, labels)
    assert not load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True).cache.built


def test_a_copy_of_the_source_in_another_folder_gets_its_own_entry(tmp_path):
    make_cifar_archive(tmp_path / "a", "cifar10")
    (tmp_path / "b").mkdir()
    shutil.copy2(tmp_path / "a" / "cifar-10-python.tar.gz", tmp_path / "b")
    first = load_dataset("cifar10", tmp_path / "a", download=False, cache_dir=tmp_path / "cache")
    copy = load_dataset("cifar10", tmp_path / "b", download=False, cache_dir=tmp_path / "cache")
    # same key (the archive's content), but the folder is part of the entry's name: decoded again, and
    # neither evicts the other
    assert copy.cache.built and copy.cache.meta.key == first.cache.meta.key and copy.cache.path != first.cache.path
    assert first.cache.path.is_dir() and np.array_equal(copy.train_x, first.train_x)


def test_concurrent_builders_decode_once(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, classes=2, train=6, val=2, corrupt=False, empty_class=False)
    code = textwrap.dedent(f"""
        from nas_attn.data import load_dataset
        ds = load_dataset("imagefolder", {str(root)!r}, 40, cache_dir={str(tmp_path / 'cache')!r}, quiet=True)
        print(ds.cache.built, int(ds.train_x.astype("int64").sum()))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o[0] for o in outs) == ["False", "False", "True"] and len({o[1] for o in outs}) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")].__len__() == 1


def test_strict_data_refuses_a_corrupt_file_or_an_empty_class(tmp_path):
    root = tmp_path / "tree"
    make_tree(root, classes=2, train=3, val=1, corrupt=True, empty_class=True)
    with pytest.raises(DataError, match="class_zz_empty: empty class folder, class left out; --strict-data"):
        load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", strict=True, quiet=True)
    os.rmdir(root / "train" / "class_zz_empty")
    with pytest.raises(DataError, match=r"zz_truncated\.jpg: unreadable image"):
        load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", strict=True, quiet=True)
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())  # nothing left of the refused build
    ds = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)  # lenient: skipped
    assert len(ds.train_y) == 6
    with pytest.raises(DataError, match="zz_truncated.jpg: skipped, unreadable"):  # the entry remembers
        load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", strict=True, quiet=True)


def test_bad_trees_are_one_line_errors(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="train has no images"):
        load_dataset("imagefolder", tmp_path, 32, cache_dir=tmp_path / "cache")
    (tmp_path / "val" / "b").mkdir()
    with pytest.raises(DataError, match="class folder.s. b not in"):
        load_dataset("imagefolder", tmp_path, 32, cache_dir=tmp_path / "cache")
    make_tree(tmp_path / "t2", classes=2, train=2, val=2, corrupt=False, empty_class=False)
    os.rename(tmp_path / "t2" / "train" / "class_00", tmp_path / "t2" / "class_00_moved")
    (tmp_path / "t2" / "train" / "class_00").mkdir()  # no training image, two validation images
    ds = load_dataset("imagefolder", tmp_path / "t2", 32, cache_dir=tmp_path / "cache")
    assert ds.num_classes == 1 and len(ds.test_y) == 2 and set(ds.train_y) == {0}
    assert ds.warnings == (f"{tmp_path / 't2' / 'train' / 'class_00'}: empty class folder, class left out (with "
                           f"its images in {tmp_path / 't2' / 'val' / 'class_00'})",)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archives_and_extracted_folders_are_read(tmp_path, name):
    batches = make_cifar_archive(tmp_path / "arch", name)
    train_names = [b for b in batches if b not in ("test_batch", "test")]
    key = b"labels" if name == "cifar10" else b"fine_labels"
    ds = load_dataset(name, tmp_path / "arch", download=False, cache_dir=tmp_path / "cache")
    expect = np.concatenate([batches[b][b"data"] for b in train_names]).reshape(-1, 3, 32, 32)
    assert np.array_equal(ds.train_x, expect) and ds.num_classes == (10 if name == "cifar10" else 100)
    assert ds.train_y.tolist() == sum((batches[b][key] for b in train_names), [])
    test = "test_batch" if name == "cifar10" else "test"
    assert np.array_equal(ds.test_x, batches[test][b"data"].reshape(-1, 3, 32, 32))
    with tarfile.open(tmp_path / "arch" / next((tmp_path / "arch").iterdir()).name) as tar:
        tar.extractall(tmp_path / "folder", filter="data")
    from_folder = load_dataset(name, tmp_path / "folder", download=False, cache_dir=tmp_path / "cache")
    assert np.array_equal(from_folder.train_x, ds.train_x) and from_folder.cache.built
    resized = load_dataset(name, tmp_path / "arch", 40, download=False, cache_dir=tmp_path / "cache")
    assert resized.train_x.shape[1:] == (3, 40, 40)


def test_cifar_batches_that_are_not_cifar_are_refused(tmp_path):
    make_cifar_archive(tmp_path / "a", "cifar10")
    folder = tmp_path / "b" / "cifar-10-batches-py"
    with tarfile.open(tmp_path / "a" / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path / "b", filter="data")

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps(Exploit(), protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR batch \(UnpicklingError: refused"):
        load_dataset("cifar10", tmp_path / "b", download=False, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="no cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path / "b", download=False, cache_dir=tmp_path / "cache")


def test_a_handle_opens_the_same_splits_where_the_entry_is_missing(tree, tmp_path):
    root, _ = tree
    ds = load_dataset("imagefolder", root, 32, cache_dir=tmp_path / "cache", quiet=True)
    handle = ds.handle(SplitSpec(0.25, 3))
    assert handle.sizes == (18, 6, 9) and len(pickle.dumps(handle)) < 2000
    moved = DataSource(**{**handle.source.__dict__, "cache_dir": str(tmp_path / "elsewhere")})
    other = type(handle)(**{**handle.__dict__, "source": moved})
    splits = other.open()  # a node without the entry builds it from the same source
    assert (tmp_path / "elsewhere").is_dir()
    assert np.array_equal(splits.train_x, make_splits(ds, 0.25, 3).train_x)
    assert np.array_equal(splits.val_y, make_splits(ds, 0.25, 3).val_y)
    changed = type(handle)(**{**handle.__dict__, "key": "0" * 64, "source": moved})
    with pytest.raises(DataError, match="differ from those the search started with"):
        changed.open()


# -- on the device ------------------------------------------------------------------------------------------

def test_boxes_stay_in_bounds_with_the_recipe_ranges_and_differ_per_image():
    g = torch.Generator().manual_seed(0)
    boxes = sample_boxes(4000, 60, 80, (0.2, 0.9), (0.5, 2.0), g, CPU)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 60).all()
    assert (w >= 1).all() and (h >= 1).all() and (boxes == boxes.round()).all()
    area = w * h / (60 * 80)
    assert area.min() >= 0.2 - 0.03 and area.max() <= 0.9 + 0.03
    assert (w / h).min() >= 0.5 * 0.9 and (w / h).max() <= 2.0 * 1.1
    assert len({tuple(b.tolist()) for b in boxes[:50]}) == 50
    tight = sample_boxes(100, 10, 100, (0.9, 1.0), (1.0, 1.0), g, CPU)  # no square fits: centred fallback
    assert (tight == torch.tensor([45.0, 0.0, 55.0, 10.0])).all()


def test_random_resized_crop_takes_each_image_from_its_own_box_and_flips_some():
    s = 64
    cols = torch.arange(s).view(1, 1, 1, s).expand(32, 1, s, s)
    rows = torch.arange(s).view(1, 1, s, 1).expand(32, 1, s, s)
    x = torch.cat([cols, rows, torch.zeros_like(cols)], 1).to(torch.uint8)
    boxes = sample_boxes(32, s, s, (0.08, 1.0), (0.75, 4 / 3), torch.Generator().manual_seed(5), CPU)
    out = random_resized_crop(x, 16, (0.08, 1.0), (0.75, 4 / 3), True, torch.Generator().manual_seed(5))
    assert out.shape == (32, 3, 16, 16) and out.dtype == torch.float32
    flipped = 0
    for i in range(32):
        x0, y0, x1, y1 = boxes[i].tolist()
        c, r = out[i, 0], out[i, 1]
        assert c.min() >= x0 - 0.5 and c.max() <= x1 - 0.5 and r.min() >= y0 - 0.5 and r.max() <= y1 - 0.5
        step = c[:, 1:] - c[:, :-1]
        assert (step > 0).all() or (step < 0).all()
        flipped += bool((step < 0).all())
    assert 4 < flipped < 28  # about half, drawn per image
    box = torch.tensor([[3.0, 5.0, 19.0, 21.0]])
    assert torch.equal(resize_boxes(x[:1], box, 16), x[:1, :, 5:21, 3:19].float())  # a box of the output size
    assert torch.equal(centre_crop(x, 56), x[:, :, 4:60, 4:60])


def _image_set(n=37, side=12, rows=True):
    images = np.random.default_rng(0).integers(0, 256, (n, 3, side, side), dtype=np.uint8)
    picked = np.sort(np.random.default_rng(1).choice(n, 29, replace=False)) if rows else None
    labels = np.arange(n)[picked] if rows else np.arange(n)
    return ImageSet(images, labels, picked)


def test_streamed_batches_equal_in_memory_batches():
    images = _image_set()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(2))
    held, streamed = DeviceData(images, None, CPU), StreamedImages(images, CPU, depth=2)
    for o, slices in ((order, batch_slices(29, 8, 10)), (None, batch_slices(29, 8, drop_last=False))):
        a = [(x.clone(), y.clone()) for x, y in held.batches(o, slices)]
        b = [(x.clone(), y.clone()) for x, y in streamed.batches(o, slices)]
        assert len(a) == len(slices) == len(b)
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
        first = images.images[images.rows[(o[:8].numpy() if o is not None else np.arange(8))]]
        assert np.array_equal(a[0][0].numpy(), first) and a[0][1].tolist() == images.rows[
            o[:8].numpy() if o is not None else np.arange(8)].tolist()  # labels here are the row numbers
    for _ in streamed.batches(order, batch_slices(29, 8, 100)):  # stopping early leaves no thread behind
        break
    assert not any(t.name == "nas-attn-stream" and t.is_alive() for t in threading.enumerate())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_streamed_batches_stay_right_over_two_passes_with_a_slow_consumer_on_cuda():
    """The second pass's first copies must wait for the kernels the first pass queued on the same device
    buffers: the consumer here reads each batch only after a long matmul loop, and nothing synchronises."""
    cuda = torch.device("cuda")
    images = _image_set(n=64, side=32, rows=False)
    held, streamed = DeviceData(images, None, cuda), StreamedImages(images, cuda, depth=2)
    slices = batch_slices(len(images), 8)
    w = torch.randn(2048, 2048, device=cuda) / 2048 ** 0.5
    got, expected = [], []
    for seed in (1, 2):  # consecutive passes over different orders, so a clobbered buffer shows
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        expected += [(x.clone(), y.clone()) for x, y in held.batches(order, slices)]
        for x, y in streamed.batches(order, slices):
            v = w
            for _ in range(30):  # queued ahead of the read of x: the copy stream must not overtake it
                v = w @ v
            got.append((x.clone(), y.clone()))
    torch.cuda.synchronize()
    assert len(got) == len(expected) == 2 * len(slices)
    assert all(torch.equal(a, b) and torch.equal(ya, yb) for (a, ya), (b, yb) in zip(got, expected, strict=True))


def test_training_streamed_equals_training_in_memory(tmp_path):
    from nas_attn.arch import Arch
    from nas_attn.train import train_arch

    root = tmp_path / "tree"
    make_tree(root, classes=3, train=10, val=4, sizes=(30, 60), corrupt=False, empty_class=False, mixed=False)
    ds = load_dataset("imagefolder", root, stored_side(32, "random_resized_crop"), cache_dir=tmp_path / "c", quiet=True)
    splits = make_splits(ds, 0.2, 0)
    arch = Arch("mobilenetv2", num_classes=3, input_size=32, small_input=True, width=0.25)
    recipe = Recipe(epochs=2, batch_size=8, eval_batch_size=5, lr=0.05, augment="random_resized_crop",
                    schedule="multistep", milestones=(1,), warmup_epochs=0.5, bn_recalibration=16)
    held = train_arch(arch, splits, recipe, seed=4, device="cpu")
    streamed = train_arch(arch, splits, recipe, seed=4, device="cpu", memory_budget=0)
    assert not held.streamed and streamed.streamed
    fields = ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5", "lr")
    assert [[getattr(h, f) for f in fields] for h in held.history] == \
           [[getattr(h, f) for f in fields] for h in streamed.history]
    assert held.history[-1].lr == pytest.approx(0.005)


# -- recipes ------------------------------------------------------------------------------------------------

def _rates(recipe, steps_per_epoch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr)
    sched = make_scheduler(opt, recipe, steps_per_epoch)
    rates = []
    for _ in range(recipe.epochs * steps_per_epoch):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("recipe, expected", [
    (Recipe(epochs=6, lr=0.4, schedule="step", step_epochs=2, gamma=0.5),
     lambda t, e: 0.4 * 0.5 ** (e // 2)),
    (Recipe(epochs=6, lr=0.4, schedule="multistep", milestones=(3, 5), gamma=0.1),
     lambda t, e: 0.4 * 0.1 ** ((e >= 3) + (e >= 5))),
    (Recipe(epochs=6, lr=0.4, schedule="multistep", milestones=(3, 5), gamma=0.1, warmup_epochs=2),
     lambda t, e: 0.4 * min(1, (t + 1) / 8) * 0.1 ** ((e >= 3) + (e >= 5))),
    (Recipe(epochs=6, lr=0.4, schedule="step", step_epochs=1, gamma=0.5, warmup_epochs=1.5),
     lambda t, e: 0.4 * min(1, (t + 1) / 6) * 0.5 ** e),
    (Recipe(epochs=6, lr=0.4, schedule="cosine", warmup_epochs=1),
     lambda t, e: 0.4 * (t + 1) / 4 if t < 4 else 0.2 * (1 + math.cos(math.pi * (t - 4) / 20))),
    (Recipe(epochs=6, lr=0.4, schedule="constant", warmup_epochs=1), lambda t, e: 0.4 * min(1, (t + 1) / 4)),
])
def test_schedules_give_the_expected_learning_rates(recipe, expected):
    rates = _rates(recipe, steps_per_epoch=4)
    assert rates == pytest.approx([expected(t, t // 4) for t in range(24)], rel=1e-6, abs=1e-12)


def test_top5_counts_on_a_hand_checked_example():
    logits = torch.tensor([
        [9.0, 8, 7, 6, 5, 4, 3],   # label 0: top-1 and top-5
        [9.0, 8, 7, 6, 5, 4, 3],   # label 4: fifth best, top-5 only
        [9.0, 8, 7, 6, 5, 4, 3],   # label 5: sixth, neither
        [1.0, 2, 3, 4, 5, 6, 7],   # label 6: top-1
    ])
    top1, top5 = correct_counts(logits, torch.tensor([0, 4, 5, 6]))
    assert (int(top1), int(top5)) == (2, 3)
    assert [int(v) for v in correct_counts(logits[:, :3], torch.tensor([2, 2, 1, 0]))] == [0, 4]  # 3 classes


def test_recipe_fields_are_checked_in_the_space_file(tmp_path):
    from nas_attn.errors import SpaceError
    from nas_attn.space import load_space

    good = (REPO / "search_spaces" / "smoke.yaml").read_text()
    for train, message in [
        ("{schedule: multistep}", "train: milestones: schedule multistep needs at least one milestone"),
        ("{schedule: multistep, milestones: [5, 3]}", "milestones: must increase strictly"),
        ("{warmup_epochs: 1}", "onecycle warms up by itself"),
        ("{augment: random_resized_crop, rrc_scale: [0.5, 0.2]}", "rrc_scale: the lower bound 0.5 exceeds"),
        ("{augment: rotate}", "train.augment: Input should be 'pad_crop' or 'random_resized_crop'"),
        ("{gamma: 1.5}", "train.gamma: Input should be less than or equal to 1"),
        ("{milestones: [true]}", "train.milestones.0"),
    ]:
        path = tmp_path / "s.yaml"
        path.write_text(good.replace("train: {epochs: 2, batch_size: 64, lr: 0.1}", f"train: {train}"))
        with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace("[", r"\[")):
            load_space(path)
