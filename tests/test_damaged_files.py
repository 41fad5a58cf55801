"""Damaged files of a run folder read back (a checkpoint's weights, the probe images): one NasAttnError line, never a
traceback."""

import random

import pytest
import torch

from nas_attn.checkpoints import WEIGHTS, load_into
from nas_attn.errors import NasAttnError


def test_intact_weights_load(tmp_path):
    model = torch.nn.Linear(3, 2)
    (tmp_path / "ckpt").mkdir()
    torch.save(model.state_dict(), tmp_path / "ckpt" / WEIGHTS)
    other = torch.nn.Linear(3, 2)
    load_into(other, "ckpt", tmp_path, "trial 0")
    assert torch.equal(other.weight, model.weight)


def test_every_random_byte_string_is_one_damaged_line(tmp_path):
    """torch's weights-only unpickler fails on random bytes in many ways (UnpicklingError, KeyError, EOFError,
    …: a KeyError once reached the user as a traceback); 300 seeded strings of several lengths, each refused."""
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "ckpt" / WEIGHTS
    kinds = set()
    for seed in range(300):
        rng = random.Random(seed)
        path.write_bytes(rng.randbytes(rng.choice([1, 7, 64, 4096])))
        with pytest.raises(NasAttnError, match=r"^trial 0: its checkpoint ckpt is damaged \(") as info:
            load_into(torch.nn.Linear(3, 2), "ckpt", tmp_path, "trial 0")
        assert "\n" not in str(info.value)
        kinds.add(str(info.value).split("(", 1)[1][:20])
    assert len(kinds) > 1  # several ways of failing were met, each turned into the one line


def test_a_zip_that_is_not_a_state_dict_is_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    torch.save([1, 2, 3], tmp_path / "ckpt" / WEIGHTS)
    with pytest.raises(NasAttnError, match="holds no state dict"):
        load_into(torch.nn.Linear(3, 2), "ckpt", tmp_path, "trial 0")


def test_every_damaged_probe_image_file_loads_or_is_one_line(tmp_path):
    """``heatmaps/images.npz`` with bytes flipped (or replaced): 300 seeded damages, each either still a valid
    archive or one NasAttnError line (flipped flags once raised RuntimeError)."""
    import io

    import numpy as np

    from nas_attn.probes import FOLDER, IMAGES, HeatmapImages

    buf = io.BytesIO()
    np.savez_compressed(buf, indices=np.arange(4), images=np.zeros((4, 1, 8, 8), np.uint8), labels=np.arange(4),
                        mean=np.array([0.5]), std=np.array([0.2]), class_names=np.array('["a", "b"]'))
    (tmp_path / FOLDER).mkdir()
    outcomes = {"loaded": 0, "refused": 0}
    for seed in range(300):
        rng = random.Random(seed)
        damaged = bytearray(buf.getvalue())
        for _ in range(rng.choice([1, 4, 16])):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        data = rng.randbytes(rng.choice([1, 50, 4096])) if seed % 3 == 0 else bytes(damaged)
        (tmp_path / FOLDER / IMAGES).write_bytes(data)
        try:
            HeatmapImages.load(tmp_path)
            outcomes["loaded"] += 1
        except NasAttnError as exc:
            assert "\n" not in str(exc) and "damaged" in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 200 and sum(outcomes.values()) == 300, outcomes
