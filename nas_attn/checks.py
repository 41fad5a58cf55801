"""Checks of a search's flags against the world (paths, the cluster, the dataset's size, the run folder it
resumes, the space's constraints), made after the space is read and before data is loaded or Ray starts:
each problem is one :class:`~nas_attn.errors.NasAttnError` line, within about a second, with nothing written.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from nas_attn import storage
from nas_attn.errors import NasAttnError
from nas_attn.plan import SearchOptions
from nas_attn.records import Manifest
from nas_attn.runfolder import RunFolder
from nas_attn.space import SearchSpace

#: training and test images of the built-in datasets (their full, official sizes)
DATASET_SIZES = {"fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000)}
#: how long a HOST:PORT may take to answer, connecting and then speaking gRPC (Ray's GCS protocol)
PROBE_TIMEOUT_S = 2.0


def check_before_data(options: SearchOptions, space: SearchSpace, run: RunFolder) -> None:
    """Everything :func:`~nas_attn.search.run_search` can refuse before it loads data or starts Ray."""
    check_storage_path(options.storage_path)
    check_storage_url(options.storage)
    check_address(options.address or os.environ.get("RAY_ADDRESS"), "--address" if options.address else
                  "$RAY_ADDRESS")
    check_subsets(space)
    check_data_files(options, space)
    check_resume_flags(options, run, run.read_manifest() if run.resuming else None, space)
    check_constraints(space)


# -- paths ----------------------------------------------------------------------------------------------

def check_storage_path(value: str | None) -> None:
    """``--storage-path``: a URI is left to Ray's file systems; a local path must be a folder it can create
    and write (Ray Tune would fail half a minute later, after the data is loaded and Ray started)."""
    if value is None or ("://" in value and urlparse(value).scheme != "file"):
        return
    path = Path(urlparse(value).path if value.startswith("file://") else value).expanduser()
    check_writable_dir(path, "--storage-path", value)


def check_writable_dir(path: Path, flag: str, given: str | Path) -> None:
    """``path`` is a folder that can be written, or can be created as one (its first existing ancestor)."""
    if path.exists() and not path.is_dir():
        raise NasAttnError(f"{flag} {given}: not a directory")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NasAttnError(f"{flag} {given}: {existing} is a file, not a directory")
    try:  # os.access says yes to root on a read-only mount or /proc: creating (and removing) a folder tells
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".nas-attn-probe-"))
    except OSError as exc:
        raise NasAttnError(f"{flag} {given}: cannot write in {existing} ({exc.strerror or exc})") from None


def check_out_file(path: Path, flag: str = "--out") -> None:
    """An output file's folder can be written (a ``/proc`` path, a read-only folder, a path under a file)."""
    path = path.expanduser()
    if path.is_dir():
        raise NasAttnError(f"{flag} {path}: is a directory")
    check_writable_dir(path.parent, flag, path)


# -- services -------------------------------------------------------------------------------------------

def check_storage_url(url: str | None) -> None:
    """``--storage``: its driver installed and its server answering (an SQLite file's folder present), found in
    a second where Optuna would fail only after data and Ray (:func:`nas_attn.storage.check_storage_url`)."""
    if url:
        storage.check_storage_url(url)


def check_address(address: str | None, flag: str = "--address") -> None:
    """``auto`` needs a Ray started on this machine; ``HOST:PORT`` must answer, and answer in gRPC (Ray's
    GCS), within :data:`PROBE_TIMEOUT_S` (``ray.init`` waits minutes on a port that is not Ray's)."""
    if not address:
        return
    if address == "auto":
        if not (Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster").exists():
            raise NasAttnError(f"{flag} auto: no Ray cluster was started on this machine (ray start --head)")
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NasAttnError(f"{flag} {address}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    _probe_gcs(host, int(port), f"{flag} {address}")


#: HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113 section 3.4)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _probe_gcs(host: str, port: int, what: str) -> None:
    """The port must accept a connection, and answer HTTP/2's preface with a SETTINGS frame first (RFC 9113
    3.4), as Ray's GCS, a gRPC server, does.

    One exchange by hand: grpc's own channel cannot tell a port that is not HTTP/2 (an HTTP/1 server, SSH) from
    a transient failure (it retries until its timeout), and it would go through an HTTP proxy, which Ray's
    clients do not. A silent port is refused after :data:`PROBE_TIMEOUT_S`. A cluster with TLS
    (``RAY_USE_TLS``) speaks TLS first: only the connection is checked there."""
    try:
        sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except OSError as exc:
        raise NasAttnError(f"{what}: no Ray cluster answers there ({exc.strerror or exc})") from None
    answer, failure = b"", None
    with sock:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        try:
            sock.sendall(_HTTP2_PREFACE)
            while len(answer) < 9:  # a frame header: length (3 bytes), type, flags, stream (4)
                part = sock.recv(9 - len(answer))
                if not part:
                    break
                answer += part
        except OSError as exc:  # a timeout (a silent port) or a reset
            failure = "nothing" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
    if len(answer) == 9 and answer[3] == 0x4:
        return
    heard = repr(answer[:40].decode("ascii", "replace").split("\r")[0]) if answer else failure or "nothing"
    raise NasAttnError(f"{what}: the port is open but does not speak Ray's protocol (gRPC; it answered {heard}); "
                       f"give the head's GCS address (ray start --head prints it)")


# -- the dataset ----------------------------------------------------------------------------------------

def check_subsets(space: SearchSpace) -> None:
    """Subsets larger than a built-in dataset (it would silently use all of it)."""
    sizes = DATASET_SIZES.get(space.dataset.name)
    if sizes is None:
        return
    n_train, n_test = sizes
    for section, values in (("dataset", space.file.dataset), ("cpu_budget", space.file.cpu_budget)):
        if values is None:
            continue
        for key, have in (("train_subset", n_train), ("val_subset", n_train), ("test_subset", n_test)):
            want = getattr(values, key)
            if want is not None and want > have:
                raise NasAttnError(f"{space.path}: {section}.{key}: {want} is more than {space.dataset.name}'s "
                                   f"{have} {'test' if key == 'test_subset' else 'training'} images")


def check_data_files(options: SearchOptions, space: SearchSpace) -> None:
    """The archive or IDX files in ``--data-root`` are what they claim to be (their first bytes)."""
    if options.data_root is None:
        return
    root = Path(options.data_root).expanduser()
    name = space.dataset.name
    if name in ("cifar10", "cifar100"):
        archive = root / f"{name.replace('cifar', 'cifar-')}-python.tar.gz"
        if archive.is_file() and _head(archive, 2) != b"\x1f\x8b":
            raise NasAttnError(f"{archive}: not a gzip-compressed tar archive (damaged or another file)")
    elif name == "fashion_mnist":
        for gz in sorted(root.glob("*-ubyte.gz")) + sorted((root / "FashionMNIST" / "raw").glob("*-ubyte.gz")):
            if _head(gz, 2) != b"\x1f\x8b":
                raise NasAttnError(f"{gz}: not a gzip file (damaged or another file)")


def _head(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError as exc:
        raise NasAttnError(f"{path}: cannot read ({exc.strerror or exc})") from None


# -- the run folder -------------------------------------------------------------------------------------

def check_resume_flags(options: SearchOptions, run: RunFolder, manifest: Manifest | None,
                       space: SearchSpace | None = None) -> None:
    """A resumed run keeps its storage and its budget: flags that say otherwise are refused, not ignored."""
    if not run.resuming or not manifest:
        return
    recorded = manifest.storage or ""
    journal = not recorded or "://" not in recorded
    if options.storage and journal:
        raise NasAttnError(f"--storage {storage.hide_password(options.storage)}: run {run.path.name} keeps its "
                           f"study in its journal file; resume it without --storage")
    shown = storage.hide_password(options.storage) if options.storage else ""
    if options.storage and not journal and shown != storage.hide_password(recorded):  # recorded without password
        raise NasAttnError(f"--storage {shown}: run {run.path.name} keeps its study in {recorded}")
    if not options.storage and not journal:
        raise NasAttnError(f"run {run.path.name} keeps its study in {recorded}: resume it with --storage {recorded}")
    applied = (manifest.budget or {}).get("cpu_budget_applied")
    if options.full_budget and applied:
        raise NasAttnError(f"--full-budget: run {run.path.name} started with the space's cpu_budget; a resume "
                           f"keeps it (start a new run for the full budget)")
    epochs = (manifest.budget or {}).get("epochs")
    if options.epochs is not None and epochs is not None and options.epochs != epochs:
        raise NasAttnError(f"--epochs {options.epochs}: run {run.path.name} trains {epochs} epochs a trial; a "
                           f"resume keeps them (start a new run for another number)")
    check_numbering(space, run, manifest)
    seed = manifest.dataset.seed if manifest.dataset else None
    if options.seed is not None and seed is not None and options.seed != seed:
        raise NasAttnError(f"--seed {options.seed}: run {run.path.name} started with seed {seed} (its split and "
                           f"its trials' seeds); a resume keeps it")


def check_numbering(space: SearchSpace | None, run: RunFolder, manifest: Manifest) -> None:
    """A library backbone numbered otherwise than when the run started (another timm or torchvision) would
    put the recorded trials' placements elsewhere: the resume is refused."""
    recorded = manifest.numbering
    now = space.base.numbering_record() if space is not None and recorded else None
    if now and now["digest"] != recorded.get("digest"):
        old = manifest.versions or {}
        raise NasAttnError(f"run {run.path.name} numbered {recorded.get('backbone')} as {recorded.get('positions')} "
                           f"positions (digest {recorded.get('digest')}, timm {old.get('timm')}, torchvision "
                           f"{old.get('torchvision')}); here it has {now['positions']} (digest {now['digest']}): "
                           "resume with the versions it started with, or start a new run")


# -- constraints ----------------------------------------------------------------------------------------

def check_constraints(space: SearchSpace) -> None:
    """Constraints that no arch of the space meets, found from its cheapest arch before any is sampled.

    With inserted modules only (no substitution) every arch costs at least the plain backbone, so the
    backbone (at the narrowest width the space may run) is the cheapest arch; the check costs one model
    built on the meta device."""
    c = space.file.constraints
    if (c.max_flops is None and c.max_params is None) or any("substitute" in p.ops for p in space.positions):
        return
    from nas_attn.complexity import complexity

    base = space.base
    width = (space.file.cpu_budget.width if space.file.cpu_budget else None) or base.width
    # the fewest classes the dataset may have: the classifier's cost is the smallest it can be
    classes = {"cifar100": 100, "cifar10": 10, "fashion_mnist": 10}.get(space.dataset.name, 2)
    base = dataclasses.replace(base, width=min(width, base.width), placements=[], num_classes=classes)
    cost = complexity(base)
    reason = space.violation(base, cost).reason
    if reason is not None:
        raise NasAttnError(f"{space.path}: constraints: no arch of this space meets them: its cheapest, the plain "
                           f"{base.backbone}, already has {reason}")
