"""The run folder ``RESULTS_DIR/<space>/<run-id>/``: where it is, what it holds, and its manifest.

| file | written by |
| --- | --- |
| ``optuna.journal`` | the study (source of truth: every table is rebuilt from it) |
| ``manifest.json`` | the driver, at the start and end of every attempt |
| ``space.yaml`` | a copy of the space file, once |
| ``tracebacks/<trial>.txt`` | the full traceback of a trial that raised |
| ``ray.log`` | Ray's and Ray Tune's own warnings and errors (kept off the terminal) |
| ``.lock`` | held by the search that writes the folder (:class:`nas_attn.storage.RunLock`) |
| ``trials.parquet``, ``history.parquet``, ``front.csv``, ``archs/``, ``front_eval.json`` | :mod:`nas_attn.results` |
| ``tune/`` | Ray Tune (checkpoints), unless ``--storage-path`` puts it elsewhere |
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from nas_attn.errors import NasAttnError, SpaceError, validation_message
from nas_attn.records import Manifest
from nas_attn.storage import check_folder_name

STUDY_JOURNAL = "optuna.journal"
MANIFEST = "manifest.json"
SPACE_COPY = "space.yaml"
TRACEBACKS = "tracebacks"
RAY_LOG = "ray.log"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunFolder:
    """A run folder and whether the search continues a run already started there."""

    path: Path
    resuming: bool

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def journal(self) -> Path:
        return self.path / STUDY_JOURNAL

    def traceback_file(self, trial_number: int) -> Path:
        return self.path / TRACEBACKS / f"{trial_number}.txt"

    def read_manifest(self) -> Manifest:
        """The manifest (empty before the first attempt); a one-line error if it is damaged."""
        return read_manifest(self.manifest_path) if self.manifest_path.exists() else Manifest()


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``: the one reader of ``manifest.json``.

    Raises:
        NasAttnError: not JSON, not an object, or a key of the wrong type (one line naming the file and key).
    """
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError) as exc:
        raise NasAttnError(f"{path}: malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise NasAttnError(f"{path}: not a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise NasAttnError(f"{path}: {validation_message(exc)}") from None


def in_ray_job() -> bool:
    """Whether this process is the entrypoint of a Ray job (``ray job submit``): Ray sets this variable."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def default_results_dir() -> Path:
    """``$NAS_ATTN_RESULTS_DIR``; inside a Ray job ``~/nas-attn/results`` (a job's working directory is a
    temporary folder of the Ray session, gone with it); else ``./results``."""
    if os.environ.get("NAS_ATTN_RESULTS_DIR"):
        return Path(os.environ["NAS_ATTN_RESULTS_DIR"]).expanduser()
    return Path.home() / "nas-attn" / "results" if in_ray_job() else Path("results")


def check_writable_folder(folder: Path, what: str) -> None:
    """``folder`` is, or can become, a folder this process writes in: probed in its nearest existing
    ancestor with a temporary folder that is removed at once (so nothing is left behind)."""
    if folder.exists() and not folder.is_dir():
        raise NasAttnError(f"{what} {folder}: not a folder")
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    if not existing.is_dir():
        raise NasAttnError(f"{what} {folder}: {existing} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nas-attn-probe-", dir=existing))
    except OSError as exc:
        raise NasAttnError(f"{what} {folder}: cannot write in {existing} ({exc.strerror or exc})") from None


def resolve_run_folder(results_dir: str | None, space_name: str, run_id: str | None, resume: bool) -> RunFolder:
    """Where the run goes: ``--run-id`` (resumed when it exists), the latest run (``--resume``) or a new one."""
    results = Path(results_dir).expanduser() if results_dir else default_results_dir()
    check_writable_folder(results, "--results-dir")
    base = results.resolve() / check_folder_name(space_name, "space name")
    if run_id is not None:
        folder = base / check_folder_name(run_id, "--run-id")
        started = (folder / MANIFEST).exists()
        if resume and not started:  # a typo in the run id must not silently start a new run
            raise NasAttnError(f"--resume --run-id {run_id}: no run to resume in {folder} (no {MANIFEST})")
        return RunFolder(folder, started)
    if resume:
        runs = sorted(p for p in base.glob("*") if (p / MANIFEST).exists()) if base.is_dir() else []
        if not runs:
            raise NasAttnError(f"--resume: no earlier run of space {space_name!r} under {base}")
        return RunFolder(runs[-1], True)
    return RunFolder(base / dt.datetime.now().strftime("%Y%m%d-%H%M%S"), False)


def check_resumable(run: RunFolder, manifest: Manifest, space_path: Path, space_sha256: str) -> None:
    """A resumed run (``manifest``: its manifest) must use the space file it started with."""
    if not run.resuming:
        return
    recorded = manifest.space_sha256
    if recorded and recorded != space_sha256:
        raise SpaceError(f"{space_path}: changed since run {run.path.name} started (sha256 differs); "
                         f"resume with the same file or start a new run")


def git_commit() -> str | None:
    """The commit of the code that runs: ``$NAS_ATTN_GIT_COMMIT`` (set it where the code travels without
    ``.git``, e.g. ``ray job submit --working-dir``), else git in the source tree."""
    if os.environ.get("NAS_ATTN_GIT_COMMIT"):
        return os.environ["NAS_ATTN_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


#: the libraries whose versions a run records
_LIBRARIES = ("torch", "torchvision", "timm", "optuna", "ray")


def versions() -> dict[str, str | None]:
    """The versions of Python and of the libraries a run depends on, read from what is installed without
    importing them: the driver of a search never imports torch otherwise (issue 23)."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # pyproject.toml's, as installed
        ours = version("nas-attn")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        ours = "0+unknown"
    return {"python": platform.python_version(), **{name: _installed(name) for name in _LIBRARIES}, "nas_attn": ours}


def _installed(name: str) -> str | None:
    """``name``'s ``__version__`` as importing it would give it: torch's and torchvision's carry the build
    (``2.14.1+cu130``) in their ``version.py``, which their package metadata leaves out."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return None
    try:
        text = Path(str(dist.locate_file(f"{name}/version.py"))).read_text()
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    except OSError:
        found = None
    return found.group(1) if found else dist.version


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def argv() -> list[str]:
    return list(sys.argv)
