"""Damaged files of a run folder read back (a checkpoint's weights, the probe images): one NasAttnError line, never a
traceback."""

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas_attn.arch import Arch
from nas_attn.checkpoints import (
    ARCH,
    DIGEST,
    WEIGHTS,
    check_checkpoint,
    put_state,
    read_state,
    save_checkpoint,
)
from nas_attn.errors import NasAttnError


def test_intact_weights_load(tmp_path):
    model = torch.nn.Linear(3, 2)
    (tmp_path / "ckpt").mkdir()
    torch.save(model.state_dict(), tmp_path / "ckpt" / WEIGHTS)
    other = torch.nn.Linear(3, 2)
    put_state(other, read_state("ckpt", tmp_path, "trial 0"), "ckpt", "trial 0")
    assert torch.equal(other.weight, model.weight)


def test_every_random_byte_string_is_one_damaged_line(tmp_path):
    """A checkpoint without a digest (written before there was one) that is not a zip archive: 300 seeded random
    byte strings of several lengths, each refused as damaged before torch unpickles anything."""
    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "ckpt" / WEIGHTS
    for seed in range(300):
        rng = random.Random(seed)
        path.write_bytes(rng.randbytes(rng.choice([0, 1, 7, 64, 4096])))
        with pytest.raises(NasAttnError, match=r"^trial 0: its checkpoint ckpt is damaged \(model.pt is not the zip"):
            put_state(torch.nn.Linear(3, 2), read_state("ckpt", tmp_path, "trial 0"), "ckpt", "trial 0")


def test_every_zip_of_random_pickle_bytes_is_one_damaged_line(tmp_path):
    """A zip archive laid out as torch.save's whose pickle is random bytes: torch's weights-only unpickler fails on
    them in many ways (UnpicklingError, KeyError, EOFError, …: a KeyError once reached the user as a traceback);
    300 seeded archives, each one line."""
    import zipfile

    (tmp_path / "ckpt").mkdir()
    path = tmp_path / "ckpt" / WEIGHTS
    kinds = set()
    for seed in range(300):
        rng = random.Random(seed)
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("model/data.pkl", rng.randbytes(rng.choice([1, 7, 64, 4096])))
            z.writestr("model/version", "3\n")
        with pytest.raises(NasAttnError, match=r"^trial 0: its checkpoint ckpt is damaged \(") as info:
            put_state(torch.nn.Linear(3, 2), read_state("ckpt", tmp_path, "trial 0"), "ckpt", "trial 0")
        assert "\n" not in str(info.value)
        kinds.add(str(info.value).split("(", 1)[1][:20])
    assert len(kinds) > 1  # several ways of failing were met, each turned into the one line


def test_a_zip_that_is_not_a_state_dict_is_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    torch.save([1, 2, 3], tmp_path / "ckpt" / WEIGHTS)
    with pytest.raises(NasAttnError, match="holds no state dict"):
        put_state(torch.nn.Linear(3, 2), read_state("ckpt", tmp_path, "trial 0"), "ckpt", "trial 0")


def _saved(tmp_path, name: str, arch: Arch, seed: int = 0) -> Path:
    """A checkpoint folder as a trial writes it (weights, digest, arch.json) of a small stand-in model."""
    torch.manual_seed(seed)
    folder = tmp_path / name
    folder.mkdir()
    save_checkpoint(folder, torch.nn.Linear(3, 2).state_dict(), arch.to_json())
    return folder


VANILLA = Arch.from_dict({"backbone": "mobilenetv2", "placements": []})
ULSAM = Arch.from_dict({"backbone": "mobilenetv2", "placements": [{"position": 14, "module": "ulsam"}]})


def test_a_trials_checkpoint_is_written_with_its_digest_and_loads(tmp_path):
    folder = _saved(tmp_path, "ckpt", VANILLA)
    assert sorted(p.name for p in folder.iterdir()) == [ARCH, WEIGHTS, DIGEST]
    state = read_state("ckpt", tmp_path, "trial 0", VANILLA)
    model = torch.nn.Linear(3, 2)
    put_state(model, state, "ckpt", "trial 0")
    assert torch.equal(model.weight, torch.load(folder / WEIGHTS)["weight"])


@pytest.mark.parametrize("damage", ["one byte flipped", "truncated", "emptied", "another trial's weights"])
def test_weights_that_differ_from_their_digest_are_one_line(tmp_path, damage):
    """Each damage that still leaves a file; a flipped byte inside a tensor leaves a zip torch would load."""
    folder = _saved(tmp_path, "ckpt", VANILLA)
    data = bytearray((folder / WEIGHTS).read_bytes())
    if damage == "one byte flipped":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "emptied":
        data = bytearray()
    else:
        data = bytearray((_saved(tmp_path, "other", VANILLA, seed=1) / WEIGHTS).read_bytes())
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(NasAttnError, match=r"^trial 0: its checkpoint ckpt is damaged \(model.pt is not the file "
                                           r"written: its sha256 differs from model.pt.sha256\)$"):
        read_state("ckpt", tmp_path, "trial 0", VANILLA)


def test_another_archs_checkpoint_folder_is_one_line(tmp_path):
    """A whole folder of another arch (weights, digest and arch.json consistent) put in the trial's place."""
    _saved(tmp_path, "ckpt", ULSAM)
    with pytest.raises(NasAttnError, match=r"^trial 0: its checkpoint ckpt is another arch's \(arch.json names "
                                           r"14:1 ulsam, not the trial's vanilla\)$"):
        read_state("ckpt", tmp_path, "trial 0", VANILLA)
    read_state("ckpt", tmp_path, "trial 0", ULSAM)  # its own arch reads


def test_a_missing_weights_file_is_one_line(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(NasAttnError, match=r"^trial 0: its checkpoint ckpt cannot be read \(FileNotFoundError"):
        check_checkpoint("ckpt", tmp_path, "trial 0")


@pytest.mark.parametrize("case", ["damaged", "another arch", "intact"])
def test_checking_a_checkpoint_imports_no_torch(tmp_path, case):
    """The check a command runs first is torch-free on every path through it (what makes a damaged checkpoint
    a sub-second answer): the digest, the arch.json comparison, and an intact checkpoint passing both."""
    folder = _saved(tmp_path, "ckpt", ULSAM if case == "another arch" else VANILLA)
    if case == "damaged":
        (folder / WEIGHTS).write_bytes(b"x")
    code = ("import sys; from pathlib import Path; from nas_attn.checkpoints import check_checkpoint\n"
            "from nas_attn.arch import Arch; from nas_attn.errors import NasAttnError\n"
            f"try:\n    check_checkpoint('ckpt', Path({str(tmp_path)!r}), 'trial 0', Arch.from_json({VANILLA.to_json()!r}))\n"
            "    print('passed')\n"
            "except NasAttnError as e:\n    print(e)\n"
            "print('torch' in sys.modules, 'timm' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    said = {"damaged": "trial 0: its checkpoint ckpt is damaged (model.pt is not the file written: its sha256 "
                       "differs from model.pt.sha256)",
            "another arch": "trial 0: its checkpoint ckpt is another arch's (arch.json names 14:1 ulsam, not the "
                            "trial's vanilla)",
            "intact": "passed"}[case]
    assert r.stdout.splitlines() == [said, "False False"], r.stderr
