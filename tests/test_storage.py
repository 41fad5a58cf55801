"""The run folder's safety: a torn journal tail at every byte offset, a real full disk, one writer per folder,
plain folder names."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from searchutil import REPO, TINY_SPACE, env, mount_tmpfs, search, write_space

from nas_attn.errors import NasAttnError
from nas_attn.records import Manifest
from nas_attn.storage import (
    JournalWriteError,
    RunLock,
    check_folder_name,
    check_study_present,
    open_journal,
    repair_journal,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(path: Path, trials: int) -> optuna.Study:
    study = optuna.create_study(study_name="s", storage=open_journal(path), directions=["maximize", "minimize"],
                                load_if_exists=True)
    for i in range(trials):
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        t.set_user_attr("note", "é" * (i + 1))  # multi-byte characters: offsets are bytes, not characters
        study.tell(t, [t.params["x"], float(i)])
    return study


def _complete(path: Path) -> int:
    study = optuna.load_study(study_name="s", storage=open_journal(path))
    return sum(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_torn_last_record_is_set_aside_at_every_byte_offset(tmp_path):
    source = tmp_path / "journal"
    _study(source, 3)
    data = source.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    complete_before = _complete(source) - 1  # the last record is the last trial's tell
    for cut in range(last_start + 1, len(data)):  # every torn length of the last record
        journal = tmp_path / f"cut-{cut}" / "optuna.journal"
        journal.parent.mkdir()
        journal.write_bytes(data[:cut])
        said = []
        side = repair_journal(journal, said.append)
        assert side is not None and side.read_bytes() == data[last_start:cut], cut  # kept, not deleted
        assert journal.read_bytes() == data[:last_start] and len(said) == 1 and "torn record" in said[0]
        assert _complete(journal) == complete_before
        _study(journal, 1)  # the study takes new trials, and reads back whole
        assert _complete(journal) == complete_before + 1
    assert repair_journal(source, print) is None  # an intact journal is left alone


def test_damage_before_the_last_record_is_one_line(tmp_path):
    journal = tmp_path / "optuna.journal"
    _study(journal, 2)
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2] + [b"garbage\n"] + lines[2:]))
    with pytest.raises(NasAttnError, match=r"optuna.journal: record 3 is not valid JSON, and records follow it"):
        repair_journal(journal, print)


def test_resuming_a_run_whose_journal_is_lost_is_refused(tmp_path):
    manifest = Manifest.model_validate({"attempts": [{"started": "x", "ended": "y", "counts": {"complete": 4}}]})
    with pytest.raises(NasAttnError, match="missing or empty, but run already ran trials"):
        check_study_present(tmp_path / "run", tmp_path / "run" / "optuna.journal", manifest)
    check_study_present(tmp_path / "run", tmp_path / "run" / "optuna.journal", Manifest())  # a new run


def test_the_trials_a_killed_attempt_left_are_found_in_its_attempt_record(tmp_path):
    """Counts live in ``attempts[-1]``, never at the top of the manifest: an attempt killed without notice
    (no ``ended``), closed by the next one with the study's counts, still refuses a resume without its journal
    (the check read a top-level ``counts`` that nothing writes, and let it through)."""
    killed = {"started": "x", "ended": None, "status": "killed", "counts": {"complete": 3}}
    retry = {"started": "y", "ended": None}  # the resume that was killed in turn, before it closed anything
    manifest = Manifest.model_validate({"status": "running", "attempts": [killed, retry]})
    with pytest.raises(NasAttnError, match="missing or empty, but run already ran trials"):
        check_study_present(tmp_path / "run", tmp_path / "run" / "optuna.journal", manifest)
    never_ran = Manifest.model_validate({"attempts": [{**killed, "counts": {}}, retry]})
    check_study_present(tmp_path / "run", tmp_path / "run" / "optuna.journal", never_ran)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 96 KB tmpfs (needs root and mount permission; skipped otherwise)."""
    mount = tmp_path / "tiny"
    if not mount_tmpfs(mount, "96k"):
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_never_leaves_a_torn_journal_and_a_resume_loses_nothing(tiny_filesystem):
    journal = tiny_filesystem / "optuna.journal"
    study = _study(journal, 0)
    told = 0
    with pytest.raises(JournalWriteError, match=f"cannot write {journal} \\(No space left on device\\)"):
        for i in range(10_000):
            t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            t.set_user_attr("payload", "x" * 2000)
            study.tell(t, [0.5, float(i)])
            told += 1
    assert told > 3 and journal.read_bytes().endswith(b"\n")  # the failed append was taken back whole
    assert repair_journal(journal, print) is None
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_filesystem)], check=True)  # space freed
    assert _complete(journal) == told  # every completed trial is there
    _study(journal, 1)
    assert _complete(journal) == told + 1


def test_check_folder_name_refuses_names_that_leave_the_folder():
    for bad in ["../../x", "/tmp/abs", "", ".", "..", "a/b", "a\\b", "x\x00y", "tab\there", "-flag", "n" * 5000,
                "é" * 200]:
        with pytest.raises(NasAttnError, match="must be a plain folder name"):
            check_folder_name(bad, "name")
    assert check_folder_name("20261124-001122", "--run-id") == "20261124-001122"
    assert check_folder_name("mobilenetv2_ulsam-gpu", "name") == "mobilenetv2_ulsam-gpu"


HOLD = "import sys, time; from nas_attn.storage import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"


def test_one_writer_per_run_folder_and_the_os_releases_a_dead_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env(), cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(NasAttnError, match=rf"is in use by another search \(PID {holder.pid}, started"):
            RunLock(tmp_path).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path):  # released by the operating system when its holder died
        pass


SPACE = TINY_SPACE


def test_a_second_search_on_a_run_folder_in_use_exits_2_at_once(tmp_path):
    space = write_space(tmp_path / "locked.yaml", textwrap.dedent(SPACE))
    run = tmp_path / "results" / "locked" / "r1"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env(),
                              cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        r = search("--space", space, "--results-dir", tmp_path / "results", "--run-id", "r1", timeout=120)
        assert r.returncode == 2 and time.monotonic() - t0 < 10, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and f"in use by another search (PID {holder.pid}" in r.stderr
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_a_storage_url_is_recorded_without_its_password_and_a_relative_sqlite_file_made_absolute(monkeypatch, tmp_path):
    from nas_attn import manifest
    from nas_attn.storage import hide_password

    monkeypatch.chdir(tmp_path)
    assert hide_password("postgresql+psycopg2://nas:s3cret@db:5432/runs") == "postgresql+psycopg2://nas@db:5432/runs"
    assert hide_password("sqlite:///study.db") == f"sqlite:///{tmp_path}/study.db"
    assert hide_password("/some/journal") == "/some/journal"
    assert hide_password("postgresql://u:p@h:54x/db") == "postgresql://u:***@h:54x/db"  # not a URL: masked
    monkeypatch.setattr(manifest, "argv", lambda: ["search.py", "--storage=postgresql://u:pw@h:1/d", "--storage",
                                                  "postgresql://u:pw@h:1/d"])
    assert "pw" not in " ".join(manifest._shown_command())


def test_a_storage_url_with_a_bad_port_is_one_line():
    from nas_attn.storage import check_storage_url

    with pytest.raises(NasAttnError, match=r"^--storage postgresql\+psycopg2://u:\*\*\*@h:5432x/db: not a database URL"):
        check_storage_url("postgresql+psycopg2://u:pw@h:5432x/db")
