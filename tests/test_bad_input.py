"""Bad input, family by family: each case is one line on stderr naming the offending file or flag, exit status
2, nothing created in the results folder, answered in seconds (before data is loaded or Ray starts).
``scripts/bench_cli.py`` times the same families against the 2 s target; the bound here is generous."""

import gzip
import http.server
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from searchutil import REPO, env, search

EXAMPLE = REPO / "results" / "examples" / "mobilenetv2_ulsam-cpu-budget"
LIMIT_S = 10
#: a damaged checkpoint is found when it is read, after torch (and grad-cam) are imported: seconds on a loaded
#: 2-core machine, so a looser bound for those commands
READ_LIMIT_S = 30
HEAD = "backbone: {name: mobilenetv2, width: 0.5, small_input: true}\n"


def _space(tmp: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _fmnist_space(tmp: Path, extra: str = "", dataset: str = "") -> Path:
    return _space(tmp, HEAD + f"dataset: {{name: fashion_mnist, input_size: 32{dataset}}}\n"
                  "search: {positions: [14, 17], modules: [none, ulsam], groups: [2]}\n" + extra)


#: scripts/bench_cli.py sets it to a file: each refusal's wall time is appended there (one JSON line a case)
TIMES_FILE = os.environ.get("NAS_ATTN_CLI_TIMES")


def _assert_refused(r: subprocess.CompletedProcess, elapsed: float, mention: str, results: Path | None,
                    limit: float = LIMIT_S) -> None:
    if TIMES_FILE:
        case = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].removesuffix(" (call)")
        with open(TIMES_FILE, "a") as f:
            f.write(json.dumps({"case": case, "s": round(elapsed, 3), "exit": r.returncode}) + "\n")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert mention in lines[0], (mention, lines[0])
    assert elapsed < limit, elapsed
    if results is not None:
        assert not results.exists() or not any(results.rglob("*")), sorted(results.rglob("*"))


def _search(tmp: Path, *args) -> tuple[subprocess.CompletedProcess, float, Path]:
    results = tmp / "results"
    t0 = time.monotonic()
    r = search("--results-dir", results, "--quiet", *args, timeout=120)
    return r, time.monotonic() - t0, results


@pytest.fixture(scope="module")
def http_port():
    """An open port that is not Ray (an HTTP/1 server): ``--address`` to it must be refused, not hang."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- flags: paths, addresses, URLs ----------------------------------------------------------------------

def _flag_cases(tmp: Path, http_port: int) -> dict[str, tuple[list, str]]:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return {
        "storage-path empty": (["--storage-path", ""], "--storage-path"),
        "storage-path a file": (["--storage-path", a_file], "--storage-path"),
        "storage-path under a file": (["--storage-path", a_file / "tune"], "--storage-path"),
        "storage-path under /proc": (["--storage-path", "/proc/nas-attn-tune"], "--storage-path"),
        "address not Ray": (["--address", f"127.0.0.1:{http_port}"], "--address"),
        "address closed": (["--address", f"127.0.0.1:{_closed_port()}"], "--address"),
        "address no port": (["--address", "localhost"], "--address"),
        "address empty": (["--address", ""], "--address"),
        "storage sqlite in no folder": (["--storage", f"sqlite:///{tmp}/no/such/study.db"], "--storage"),
        "storage no driver or server": (["--storage", f"postgresql://u@127.0.0.1:{_closed_port()}/db"], "--storage"),
        "results-dir empty": (["--results-dir", ""], "--results-dir"),
    }


FLAG_CASES = ["storage-path empty", "storage-path a file", "storage-path under a file", "storage-path under /proc",
              "address not Ray", "address closed", "address no port", "address empty", "storage sqlite in no folder",
              "storage no driver or server", "results-dir empty"]


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flags_are_refused_at_once(tmp_path, http_port, case):
    args, mention = _flag_cases(tmp_path, http_port)[case]
    r, elapsed, results = _search(tmp_path, "--space", _fmnist_space(tmp_path), *args)
    _assert_refused(r, elapsed, mention, None if "--results-dir" in args else results)


# -- space files ----------------------------------------------------------------------------------------

SPACE_CASES = {
    "duplicate key": (HEAD + "dataset: {name: fashion_mnist, input_size: 32}\n"
                      "search: {positions: [14], modules: [none, ulsam]}\nbudget: {trials: 3}\nbudget: {trials: 4}\n",
                      "key 'budget' given twice (again at line 5)"),
    "only none": (HEAD + "dataset: {name: fashion_mnist, input_size: 32}\n"
                  "search: {positions: [14, 17], modules: [none]}\n", "leaves nothing to search"),
    "concurrency 1e30": (HEAD + "dataset: {name: fashion_mnist, input_size: 32}\n"
                         "search: {positions: [14], modules: [none, ulsam]}\ncpu_budget: {concurrency: 1.0e+30}\n",
                         "cpu_budget.concurrency"),
    "train_subset over the dataset": (HEAD + "dataset: {name: fashion_mnist, input_size: 32, train_subset: 70000}\n"
                                      "search: {positions: [14], modules: [none, ulsam]}\n", "dataset.train_subset"),
    "val_subset over the dataset": (HEAD + "dataset: {name: cifar10, input_size: 32, val_subset: 60000}\n"
                                    "search: {positions: [14], modules: [none, ulsam]}\n", "dataset.val_subset"),
    "test_subset over the dataset": (HEAD + "dataset: {name: fashion_mnist, input_size: 32}\n"
                                     "search: {positions: [14], modules: [none, ulsam]}\n"
                                     "cpu_budget: {test_subset: 20000}\n", "cpu_budget.test_subset"),
    "constraints no arch meets": (HEAD + "dataset: {name: fashion_mnist, input_size: 32}\n"
                                  "search: {positions: [14, 17], modules: [none, ulsam]}\n"
                                  "constraints: {max_params: 1000}\n", "constraints: no arch of this space"),
}


@pytest.mark.parametrize("case", list(SPACE_CASES))
def test_bad_space_files_are_refused_at_once(tmp_path, case):
    text, mention = SPACE_CASES[case]
    r, elapsed, results = _search(tmp_path, "--space", _space(tmp_path, text))
    _assert_refused(r, elapsed, mention, results)


# -- --data-root files ----------------------------------------------------------------------------------

def _data_cases(tmp: Path) -> dict[str, tuple[Path, Path, str]]:
    root = tmp / "data"
    root.mkdir()
    cifar = _space(tmp, HEAD + "dataset: {name: cifar10, input_size: 32}\n"
                   "search: {positions: [14], modules: [none, ulsam]}\n", "cifar.yaml")
    return {
        "random cifar archive": (cifar, root / "cifar-10-python.tar.gz", "cifar-10-python.tar.gz"),
        "garbage fashion-mnist gz": (_fmnist_space(tmp), root / "train-images-idx3-ubyte.gz",
                                     "train-images-idx3-ubyte.gz"),
        "no fashion-mnist files": (_fmnist_space(tmp), root / "unrelated.txt", "--data-root"),
    }


@pytest.mark.parametrize("case", ["random cifar archive", "garbage fashion-mnist gz", "no fashion-mnist files"])
def test_bad_data_roots_are_refused_at_once(tmp_path, case):
    space, file, mention = _data_cases(tmp_path)[case]
    file.write_bytes(random.Random(1).randbytes(4096))
    if "fashion-mnist gz" in case:  # the other three files there, so that the damaged one is what is read
        for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (file.parent / name).write_bytes(gzip.compress(random.Random(2).randbytes(64)))
    r, elapsed, results = _search(tmp_path, "--space", space, "--data-root", file.parent,
                                  "--cache-dir", tmp_path / "cache")
    _assert_refused(r, elapsed, mention, results)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


# -- resumes --------------------------------------------------------------------------------------------

def _damage_lock(run: Path) -> None:
    (run / ".lock").mkdir()


def _damage_journal(run: Path) -> None:
    (run / "optuna.journal").write_bytes(random.Random(3).randbytes(8192))


RESUME_CASES = {
    "--full-budget on a cpu-budget run": (["--full-budget"], None, "--full-budget"),
    "--storage on a journal run": (["--storage", "sqlite:///{tmp}/study.db"], None, "--storage"),
    ".lock is a folder": ([], _damage_lock, ".lock"),
    "journal of random bytes": ([], _damage_journal, "optuna.journal"),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_contradicting_or_damaged_resumes_are_refused_at_once(tmp_path, case):
    flags, damage, mention = RESUME_CASES[case]
    run = tmp_path / "results" / "mobilenetv2_ulsam" / "r1"
    shutil.copytree(EXAMPLE, run)
    space = shutil.copy(EXAMPLE / "space.yaml", tmp_path / "mobilenetv2_ulsam.yaml")
    if damage is not None:
        damage(run)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    t0 = time.monotonic()
    r = search("--space", space, "--results-dir", run.parent.parent, "--run-id", run.name, "--quiet",
               *[str(f).format(tmp=tmp_path) for f in flags], timeout=120)
    _assert_refused(r, time.monotonic() - t0, mention, None)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name != ".lock")
    assert after == [p for p in before if p.name != ".lock"]


# -- --arch ---------------------------------------------------------------------------------------------

def _arch_cases(tmp: Path) -> dict[str, tuple[str, str]]:
    (tmp / "a_dir").mkdir(exist_ok=True)
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    return {
        "missing file": (str(tmp / "missing.json"), "no such file"),
        "a folder": (str(tmp / "a_dir"), "is a directory"),
        "a FIFO": (str(fifo), "not a regular file"),
        "a very long non-JSON string": ("x" * 5000, "too long to be a file name"),
        "a long name": ("a" * 300, "too long to be a file name"),
    }


@pytest.mark.parametrize("case", ["missing file", "a folder", "a FIFO", "a very long non-JSON string", "a long name"])
def test_bad_arch_arguments_say_what_is_wrong(tmp_path, case):
    arch, mention = _arch_cases(tmp_path)[case]
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nas_attn", "complexity", "--arch", arch], capture_output=True,
                       text=True, env=env(), cwd=REPO, timeout=60)
    _assert_refused(r, time.monotonic() - t0, mention, None)


# -- export and heatmaps of damaged run folders ---------------------------------------------------------

def _checkpoint(run: Path, trial: int) -> Path:
    from nas_attn.export import find_trial

    found = find_trial(run, trial)
    return (run / found.checkpoint / "model.pt") if not Path(found.checkpoint).is_absolute() else \
        Path(found.checkpoint) / "model.pt"


def _other_arch_weights(run: Path, trial: int, path: Path) -> None:
    import pandas as pd

    trials = pd.read_parquet(run / "trials.parquet")
    done = trials[(trials["status"] == "complete") & (trials["arch"] != trials.set_index("trial").loc[trial, "arch"])]
    shutil.copy(_checkpoint(run, int(done["trial"].iloc[0])), path)


CHECKPOINT_DAMAGES = {
    "random bytes": lambda run, t, p: p.write_bytes(random.Random(7).randbytes(4096)),
    "truncated": lambda run, t, p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "zero bytes": lambda run, t, p: p.write_bytes(b""),
    "another arch's weights": _other_arch_weights,
}


@pytest.mark.parametrize("command", ["export", "heatmaps"])
@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGES))
def test_a_damaged_checkpoint_is_one_line(smoke_run, tmp_path, command, damage):
    import pandas as pd

    copy = tmp_path / "run"
    shutil.copytree(smoke_run[0], copy)
    trial = int(pd.read_csv(copy / "front.csv")["trial"].iloc[0])
    checkpoint = _checkpoint(copy, trial)
    CHECKPOINT_DAMAGES[damage](copy, trial, checkpoint)
    args = (["export", copy, "--trial", trial, "--format", "onnx", "--out", tmp_path / "x.onnx"]
            if command == "export" else ["heatmaps", copy, "--trials", trial, "--quiet"])
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nas_attn", *map(str, args)], capture_output=True, text=True,
                       env=env(), cwd=REPO, timeout=120)
    _assert_refused(r, time.monotonic() - t0, "checkpoint", None, READ_LIMIT_S)
    assert f"trial {trial}" in r.stderr and not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("out", ["/proc/x.onnx", "/proc/self/x.onnx"])
def test_export_out_that_cannot_be_written_is_one_line(smoke_run, tmp_path, out):
    import pandas as pd

    run = smoke_run[0]
    trial = int(pd.read_csv(run / "front.csv")["trial"].iloc[0])
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nas_attn", "export", str(run), "--trial", str(trial), "--format",
                        "onnx", "--out", out], capture_output=True, text=True, env=env(), cwd=REPO, timeout=120)
    _assert_refused(r, time.monotonic() - t0, "--out", None)


def test_damaged_heatmap_images_are_one_line(smoke_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(smoke_run[0], copy)
    (copy / "heatmaps" / "images.npz").write_bytes(random.Random(4).randbytes(2048))
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nas_attn", "heatmaps", str(copy), "--quiet"], capture_output=True,
                       text=True, env=env(), cwd=REPO, timeout=120)
    _assert_refused(r, time.monotonic() - t0, "images.npz", None, READ_LIMIT_S)
