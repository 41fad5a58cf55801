import numpy as np
import pytest
import torch
from conftest import SHARED_FMNIST

from nas_attn.data import load_dataset, make_splits, read_idx, stratified_split
from nas_attn.data.loader import DeviceData
from nas_attn.errors import DataError
from nas_attn.train import Preprocess, augment, recalibrate_batchnorm


def test_bundled_sample_is_a_stratified_fashion_mnist_sample(monkeypatch, tmp_path):
    monkeypatch.delenv("NAS_ATTN_DATA", raising=False)
    monkeypatch.setattr("nas_attn.data.locate.SYSTEM_FMNIST", tmp_path / "none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the user cache: nothing there
    ds = load_dataset("fashion_mnist", download=False)
    assert "bundled" in ds.source and ds.train_x.shape == (12000, 1, 28, 28) and ds.test_x.shape == (2000, 1, 28, 28)
    assert np.bincount(ds.train_y).tolist() == [1200] * 10 and np.bincount(ds.test_y).tolist() == [200] * 10
    assert ds.train_x.dtype == np.uint8 and 0.2 < ds.mean[0] < 0.4


@pytest.mark.skipif(not SHARED_FMNIST.is_dir(), reason="../shared/data/fashion-mnist not beside the repo")
def test_official_files_via_data_root_and_env(monkeypatch):
    ds = load_dataset("fashion_mnist", SHARED_FMNIST, input_size=32)
    assert ds.source == str(SHARED_FMNIST) and ds.train_x.shape == (60000, 1, 32, 32) and len(ds.test_y) == 10000
    monkeypatch.setenv("NAS_ATTN_DATA", str(SHARED_FMNIST))
    assert load_dataset("fashion_mnist").source == str(SHARED_FMNIST)
    assert read_idx(SHARED_FMNIST / "t10k-labels-idx1-ubyte.gz").shape == (10000,)


def test_missing_or_wrong_sources_are_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_dataset("fashion_mnist", tmp_path / "missing")
    with pytest.raises(DataError, match="no Fashion-MNIST IDX files"):
        load_dataset("fashion_mnist", tmp_path)
    monkeypatch.setenv("NAS_ATTN_DATA", str(tmp_path))
    with pytest.raises(DataError, match=r"\$NAS_ATTN_DATA"):
        load_dataset("fashion_mnist")
    with pytest.raises(DataError, match="unknown dataset 'mnist2'"):
        load_dataset("mnist2")
    with pytest.raises(DataError, match="train/ and val/"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "bad-idx").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x05")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad-idx")


def test_stratified_split_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 100)
    rest, val = stratified_split(labels, 0.1, seed=3)
    assert np.bincount(labels[val]).tolist() == [10] * 10 and len(np.intersect1d(rest, val)) == 0
    assert np.array_equal(val, stratified_split(labels, 0.1, seed=3)[1])
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=4)[1])


def test_make_splits_subsets_keep_classes_balanced():
    ds = load_dataset("fashion_mnist", download=False, input_size=32)
    s = make_splits(ds, 0.1, 0, train_subset=500, val_subset=200)
    assert len(s.train_y) == 500 and len(s.val_y) == 200 and np.bincount(s.val_y).tolist() == [20] * 10
    assert s.train_x.shape[1:] == (1, 32, 32) and len(s.test_y) == 2000
    t = make_splits(ds, 0.1, 0, test_subset=300)
    assert np.bincount(t.test_y).tolist() == [30] * 10 and len(t.test_x) == 300
    assert np.array_equal(t.test_x, ds.test_x[t.test.rows]) and np.array_equal(t.test_y, np.asarray(ds.test_y)[t.test.rows])
    assert np.array_equal(make_splits(ds, 0.1, 0, test_subset=300).test.rows, t.test.rows)  # seeded


def test_augment_crops_and_flips_on_device():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    y = augment(x, padding=2, hflip=True, gen=g)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert torch.equal(augment(x, 0, False, g), x)
    # every output row is a (possibly flipped) shifted window of the zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(y[b], w) or torch.equal(y[b], w.flip(-1)) for w in windows)


def test_batchnorm_recalibration_uses_exact_batch_statistics():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    x = np.random.default_rng(0).integers(0, 255, (64, 1, 8, 8), dtype=np.uint8)
    data = DeviceData(x, np.zeros(64, dtype=np.int64), torch.device("cpu"))
    prep = Preprocess((0.5,), (0.25,), 8, torch.device("cpu"))
    recalibrate_batchnorm(model, data, 64, 64, torch.device("cpu"), prep)
    feats = model[0](prep(data.x))
    torch.testing.assert_close(model[1].running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert model[1].momentum == 0.1


def test_a_cpu_evaluates_in_small_batches_with_the_same_counts():
    """The recipe's eval_batch_size is for GPUs; a CPU runs at most CPU_EVAL_BATCH images at once (as fast, far
    less memory: nas_attn/train.py), and the counts are those of one big batch."""
    from nas_attn.train import CPU_EVAL_BATCH, eval_batch_size, evaluate

    cpu = torch.device("cpu")
    assert eval_batch_size(1024, cpu) == CPU_EVAL_BATCH and eval_batch_size(16, cpu) == 16
    assert eval_batch_size(1024, torch.device("cuda")) == 1024
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    n = 3 * CPU_EVAL_BATCH + 5
    rng = np.random.default_rng(1)
    data = DeviceData(rng.integers(0, 255, (n, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, n), cpu)
    prep = Preprocess((0.5,), (0.25,), 8, cpu)
    ours = evaluate(model, data, 1024, cpu, prep)
    with torch.inference_mode():
        logits = model(prep(data.x))
    top1 = int((logits.argmax(1) == data.y).sum())
    top5 = int((logits.topk(5, 1).indices == data.y[:, None]).any(1).sum())
    loss = torch.nn.functional.cross_entropy(logits, data.y).item()
    assert (round(ours.top1 * n), round(ours.top5 * n)) == (top1, top5) and 0 < top1 < top5 < n
    assert ours.loss == pytest.approx(loss, rel=1e-5)
