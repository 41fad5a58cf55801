"""Damaged run folders and meaningless input: one line, exit status 2, found before Ray starts and before
anything is written; a search that fails after its attempt opened closes it; the dashboard server answers."""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from searchutil import REPO, TINY_SPACE, env, search, write_space

from nas_attn.arch import Arch
from nas_attn.dashboard import cli as dashboard_cli
from nas_attn.dashboard.server import make_server
from nas_attn.errors import ArchError, NasAttnError
from nas_attn.plan import SearchOptions, check_local_resources
from nas_attn.space import load_space

EXAMPLE = REPO / "results" / "examples" / "mobilenetv2_ulsam-cpu-budget"


def _one_line_error(stderr: str, message: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and message in lines[0], stderr


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes] | None]:
    """Every path under ``folder`` but the lock (which a search takes before it reads anything), with the
    mtime and bytes of each file."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) if p.is_file() else None
            for p in sorted(folder.rglob("*")) if p.name != ".lock"}


# -- 1. module options of an arch -------------------------------------------------------------------------

@pytest.mark.parametrize("module,position", [("lgam", 14), ("la", 14), ("bam", 14), ("csm", 17)])
@pytest.mark.parametrize("value,reason", [
    (float("inf"), "must be a finite number"), (float("-inf"), "must be a finite number"),
    (float("nan"), "must be a finite number"), (10**400, "must be a positive integer"),
    (True, "must be a positive integer"), ("8", "must be a positive integer"),
])
def test_non_finite_or_non_numeric_module_options_name_the_placement(module, position, value, reason):
    arch = Arch.from_dict({"backbone": "mobilenetv2", "width": 0.35, "input_size": 32, "small_input": True,
                           "placements": [{"position": position, "module": module, "args": {"reduction": value}}]})
    with pytest.raises(ArchError, match=rf"^placement 1 \({position}:1 {module}\): module '{module}': reduction "
                                        rf"{reason}, got "):
        arch.validate()


def test_an_overflowing_option_on_the_command_line_is_one_line():
    arch = '{"backbone":"mobilenetv2","placements":[{"position":14,"module":"lgam","args":{"reduction":1e400}}]}'
    r = subprocess.run([sys.executable, "-m", "nas_attn", "complexity", "--arch", arch], capture_output=True,
                       text=True, timeout=120, env=env(), cwd=REPO)
    assert r.returncode == 2, r.stderr
    _one_line_error(r.stderr, "placement 1 (14:1 lgam): module 'lgam': reduction must be a finite number, got inf")


# -- 3. resuming a damaged run folder ---------------------------------------------------------------------

def _insert_line(path: Path, line: bytes, at: int = 5) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:at] + [line] + lines[at:]))


DAMAGES = {
    "journal-garbage": (lambda run: _insert_line(run / "optuna.journal", b"garbage\n"),
                        "optuna.journal: record 6 is not valid JSON, and records follow it"),
    "journal-not-a-record": (lambda run: _insert_line(run / "optuna.journal", b"{}\n"),
                             "optuna.journal: record 6 is not an Optuna journal record"),
    "journal-bad-record": (lambda run: _insert_line(run / "optuna.journal", b'{"op_code": 5}\n'),
                           "optuna.journal: record 6 cannot be replayed by Optuna (KeyError"),
    "manifest-attempts": (lambda run: (run / "manifest.json").write_text('{"attempts": 5}'),
                          "manifest.json: attempts: Input should be a valid list (got 5)"),
    "front-eval-type": (lambda run: (run / "front_eval.json").write_text('{"1": {"test_acc": "abc"}}'),
                        "front_eval.json: 1.test_acc: Input should be a valid number (got 'abc')"),
    "front-eval-json": (lambda run: (run / "front_eval.json").write_text('{"1": '),
                        "front_eval.json: not a front evaluation file (JSONDecodeError"),
}


@pytest.fixture
def example_run(tmp_path):
    """A copy of the committed example run (a real journal, manifest and front_eval.json) and its space file,
    as a search resumes it: ``--results-dir tmp/results --run-id r1``."""
    run = tmp_path / "results" / "mobilenetv2_ulsam" / "r1"
    shutil.copytree(EXAMPLE, run)
    (run / "space.yaml").unlink()  # a resume writes it when missing: it must not, before the checks pass
    space = shutil.copy(EXAMPLE / "space.yaml", tmp_path / "mobilenetv2_ulsam.yaml")
    return run, space


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resuming_a_damaged_run_folder_is_refused_at_once_and_writes_nothing(example_run, damage):
    run, space = example_run
    damage_fn, message = DAMAGES[damage]
    damage_fn(run)
    before = _snapshot(run)
    t0 = time.monotonic()
    r = search("--space", space, "--results-dir", run.parent.parent, "--run-id", run.name, "--quiet", timeout=120)
    assert r.returncode == 2 and time.monotonic() - t0 < 10, r.stderr
    _one_line_error(r.stderr, message)
    assert _snapshot(run) == before  # found before Ray, the run folder untouched


def test_an_intact_example_run_passes_the_checks(example_run):
    from nas_attn.runfolder import RunFolder
    from nas_attn.search import check_run_files
    from nas_attn.space import load_space

    run, space = example_run
    check_run_files(RunFolder(run, True), load_space(str(space)), SearchOptions.from_flags(space=str(space)))


SMALL = TINY_SPACE.replace("budget:", "objectives: [val_acc, flops, params]\nbudget:")


# -- 4. resources a local Ray does not have ----------------------------------------------------------------

@pytest.mark.skipif("RAY_ADDRESS" in os.environ, reason="Ray is not local here")
def test_per_trial_resources_beyond_a_local_machine_are_refused(tmp_path):
    space = load_space(write_space(tmp_path / "s.yaml", textwrap.dedent(SMALL.replace("cpu: 1", "cpu: 3"))))
    flags = dict(space=str(space.path))
    with pytest.raises(NasAttnError, match=r"s\.yaml: resources\.cpu 3: more CPUs per trial than this machine "
                                           r"has \(2\); a local Ray would wait"):
        check_local_resources(SearchOptions.from_flags(**flags), space, 2.0, None)
    with pytest.raises(NasAttnError, match=r"^--gpus-per-trial 2: more GPUs per trial than this machine has \(1\)"):
        check_local_resources(SearchOptions.from_flags(**flags, cpus_per_trial=1, gpus_per_trial=2), space, 2.0, 1.0)
    check_local_resources(SearchOptions.from_flags(**flags, cpus_per_trial=2), space, 2.0, None)  # it fits
    check_local_resources(SearchOptions.from_flags(**flags, cpus_per_trial=1, gpus_per_trial=2), space, 2.0,
                          0.0)  # no GPU at all: the trials run on CPUs
    check_local_resources(SearchOptions.from_flags(**flags, address="auto"), space, 2.0, None)  # a cluster grows


# -- 2. the dashboard on damaged run folders ---------------------------------------------------------------

def _manifest(run: Path, **fields) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text(json.dumps({"space": "s", "status": "finished",
                                                   "objectives": ["val_acc", "flops"], **fields}))


DASHBOARD_DAMAGES = {
    "trials-wrong-schema": (lambda run: pd.DataFrame({"a": [1]}).to_parquet(run / "trials.parquet"),
                            "trials.parquet: missing column(s) trial, status, arch, placements"),
    "trials-no-arch": (lambda run: pd.DataFrame({"trial": [0], "status": ["complete"]}).to_parquet(
        run / "trials.parquet"), "trials.parquet: missing column(s) arch, placements"),
    "trials-bad-arch": (lambda run: pd.read_parquet(EXAMPLE / "trials.parquet").assign(arch="{").to_parquet(
        run / "trials.parquet"), "trials.parquet: trial 0: arch: not valid JSON"),
    "history-wrong-schema": (lambda run: (shutil.copy(EXAMPLE / "trials.parquet", run),
                                          pd.DataFrame({"a": [1]}).to_parquet(run / "history.parquet")),
                             "history.parquet: missing column(s) trial, epoch"),
    "front-eval-seeds": (lambda run: (run / "front_eval.json").write_text('{"1": {"reeval": {"seeds": "x"}}}'),
                         "front_eval.json: 1.reeval.seeds: Input should be a valid integer (got 'x')"),
    "front-eval-test-acc": (lambda run: (run / "front_eval.json").write_text('{"1": {"test_acc": "abc"}}'),
                            "front_eval.json: 1.test_acc: Input should be a valid number (got 'abc')"),
    "objectives-not-a-list": (lambda run: _manifest(run, objectives="val_acc"),
                              "manifest.json: objectives must be a list of val_acc, flops, params, latency_ms"),
    "objectives-unknown": (lambda run: _manifest(run, objectives=["val_acc", "speed"]),
                           "manifest.json: objectives must be a list of val_acc, flops"),
    "manifest-attempts": (lambda run: _manifest(run, attempts=5),
                          "manifest.json: attempts: Input should be a valid list (got 5)"),
}


@pytest.mark.parametrize("damage", list(DASHBOARD_DAMAGES))
def test_dashboard_on_a_damaged_run_folder_is_one_line(tmp_path, capsys, damage):
    run = tmp_path / "s" / "r1"
    _manifest(run)
    setup, message = DASHBOARD_DAMAGES[damage]
    setup(run)
    assert dashboard_cli.main([str(run)]) == 2
    _one_line_error(capsys.readouterr().err, message)
    assert not (run / "dashboard.html").exists()


@pytest.mark.parametrize("out,message", [
    ("FOLDER", "a folder; give the HTML file to write"),
    ("/proc/nas-attn-dashboard.html", "--out /proc/nas-attn-dashboard.html: cannot write in /proc"),
    ("FOLDER/missing/page.html", "no such folder"),
])
def test_dashboard_out_is_checked_before_the_page_is_built(tmp_path, capsys, out, message):
    run = tmp_path / "s" / "r1"
    _manifest(run)
    t0 = time.monotonic()
    assert dashboard_cli.main([str(run), "--out", out.replace("FOLDER", str(tmp_path))]) == 2
    _one_line_error(capsys.readouterr().err, message)
    assert time.monotonic() - t0 < 5 and sorted(os.listdir(tmp_path)) == ["s"]


def _get(server, path: str) -> tuple[int, bytes]:
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def watched(tmp_path):
    run = tmp_path / "s" / "r1"
    _manifest(run)
    srv = make_server([str(run)], port=0, watch=0.1, workers=2, idle_timeout=5.0, request_timeout=1.0,
                      header_timeout=1.5)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, run
    srv.shutdown()
    srv.server_close()


def test_watching_a_run_folder_that_gets_damaged_keeps_the_last_good_page(watched, capsys):
    srv, run = watched
    good_page, good_version = _get(srv, "/"), _get(srv, "/version")
    assert good_page[0] == 200 and good_version[0] == 200
    for damage in ("front-eval-test-acc", "trials-wrong-schema"):
        DASHBOARD_DAMAGES[damage][0](run)
        assert _get(srv, "/") == good_page and _get(srv, "/version") == good_version  # answered, not dropped
        (run / "front_eval.json").unlink(missing_ok=True)
    assert "dashboard: keeping the last good page: " in capsys.readouterr().err


def test_slow_clients_cannot_starve_the_dashboard_server(watched):
    """Each slow client sends a byte every 0.5 s, within the per-read timeout: only the deadline on the whole
    request line and headers frees the two workers they hold."""
    srv, _ = watched
    stop = threading.Event()

    def trickle() -> None:
        with socket.create_connection(srv.server_address[:2]) as s:
            try:
                for byte in b"GET / HTTP/1.0\r\nX-Slow: " + b"x" * 100:
                    s.sendall(bytes([byte]))
                    if stop.wait(0.5):
                        return
            except OSError:  # closed by the server: what it should do
                return

    slow = [threading.Thread(target=trickle, daemon=True) for _ in range(4)]
    for t in slow:
        t.start()
    time.sleep(0.3)  # the slow ones hold the workers first
    try:
        t0 = time.monotonic()
        status, body = _get(srv, "/version")
        assert status == 200 and time.monotonic() - t0 < 4.0, time.monotonic() - t0
    finally:
        stop.set()
        for t in slow:
            t.join(timeout=5)
