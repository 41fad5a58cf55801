"""``nas-attn dashboard --serve``: the page over HTTP, ``/version`` for ``--watch``, and the run folders' files.

Built to stay up whatever a client sends:

- A connection costs no thread until its request line and headers are all in: one dispatcher thread reads
  them without blocking from every connection (a selector), then a bounded pool of worker threads answers
  whole requests. One that sends nothing for ``idle_timeout`` seconds is closed, and so is one whose head is
  not all in ``header_timeout`` after its first byte. (Handing a connection to a worker at its first byte let
  20 clients sending a header byte every 5 s hold all 8 workers, and page loads waited 5-8 s.) An answer
  that the client does not read is cut after ``request_timeout``.
- Under ``--watch`` a run folder caught mid-write or damaged keeps the last good page on show; an error while
  answering is a 500 with one line, never a dropped connection.
- A path that is not valid UTF-8 once percent-decoded, holds a NUL or control character, names a run
  index that is not ASCII digits, or is too long is answered 400 (414 for an over-long request line);
  nothing outside the run folders is served (403/404). No request produces a traceback.
"""

from __future__ import annotations

import io
import re
import selectors
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlparse

from nas_attn.dashboard.page import build_page
from nas_attn.dashboard.rundata import DashboardError, load_run

MAX_PATH = 2048  #: characters of a request path
MAX_NAME = 255  #: bytes of one path segment (a file-name limit of every common file system)
_RUN_INDEX = re.compile(r"[0-9]{1,4}")


class DashboardServer(socketserver.TCPServer):
    """Serves ``/`` (the page), ``/version`` and ``/runs/<i>/<path>`` (run folder ``i``'s own files)."""

    allow_reuse_address = True
    #: the listen backlog: ``socketserver``'s 5 makes a burst of connections wait on SYN retries (1 s, 3 s …)
    request_queue_size = 128

    def __init__(self, address, run_dirs: list[str], watch: float | None, *, workers: int = 8,
                 idle_timeout: float = 10.0, request_timeout: float = 5.0, header_timeout: float = 10.0) -> None:
        self.run_dirs = [Path(d).expanduser().resolve() for d in run_dirs]
        self.watch, self.idle_timeout, self.request_timeout = watch, idle_timeout, request_timeout
        self.header_timeout = header_timeout
        self._lock = threading.Lock()
        self._local = threading.local()  # the request head a worker thread is answering
        self._page, self._version, self._failed = b"", "", ""
        self.refresh()
        # set before binding: a bind that fails calls server_close, which needs them (issue 25)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dashboard")
        self._new: list[tuple[socket.socket, tuple]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = False
        self._dispatcher: threading.Thread | None = None
        super().__init__(address, DashboardHandler)
        self._dispatcher = threading.Thread(target=self._dispatch, name="dashboard-dispatch", daemon=True)
        self._dispatcher.start()

    # -- the page -------------------------------------------------------------------------------
    def version(self) -> str:
        latest = 0.0
        for d in self.run_dirs:
            # heatmaps/: its files are renamed into place, which changes the folder's own mtime
            for f in ("optuna.journal", "manifest.json", "front_eval.json", "trials.parquet", "heatmaps"):
                p = d / f
                if p.exists():
                    latest = max(latest, p.stat().st_mtime)
        return f"{latest:.3f}"

    def refresh(self) -> None:
        version = self.version()
        with self._lock:
            if (version == self._version and self._page) or version == self._failed:
                return
            try:
                self._page = build_page([load_run(d) for d in self.run_dirs], self.watch).encode()
            except Exception:
                self._failed = version  # not rebuilt again until a file changes
                raise
            self._version = version

    def page(self) -> tuple[bytes, str]:
        if self.watch:
            try:
                self.refresh()
            except Exception as exc:  # a file caught mid-write or damaged: keep the last good page
                print(f"dashboard: keeping the last good page: {_one_line(exc)}", file=sys.stderr, flush=True)
        with self._lock:
            return self._page, self._version

    # -- connections: idle ones wait in a selector, active ones go to the pool -------------------
    def process_request(self, request, client_address) -> None:  # called by serve_forever after accept
        with self._lock:
            self._new.append((request, client_address))
        self._wake_w.send(b"\0")

    def _dispatch(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        waiting: dict[socket.socket, _Pending] = {}
        while not self._closing:
            for key, _ in sel.select(timeout=min(0.5, self.idle_timeout / 2, self.header_timeout / 2)):
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    continue
                sock = key.fileobj
                pending = waiting[sock]
                if pending.receive(sock, self.header_timeout):
                    continue
                sel.unregister(sock)
                del waiting[sock]
                if pending.complete:  # a worker only ever gets a request whose head is all in
                    self._pool.submit(self._serve, sock, pending.address, bytes(pending.data))
                else:
                    self.shutdown_request(sock)  # closed by the client before a whole request
            with self._lock:
                new, self._new = self._new, []
            for sock, address in new:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
                waiting[sock] = _Pending(address, time.monotonic() + self.idle_timeout)
            now = time.monotonic()
            for sock in [s for s, p in waiting.items() if p.deadline < now]:
                sel.unregister(sock)
                del waiting[sock]
                self.shutdown_request(sock)  # idle, or its head too slow: closed, no thread ever held
        for sock in waiting:
            self.shutdown_request(sock)
        sel.close()

    def _serve(self, sock: socket.socket, address, head: bytes) -> None:
        self._local.head = head
        try:
            sock.setblocking(True)
            sock.settimeout(self.request_timeout)  # the answer is written under this timeout
            self.finish_request(sock, address)
        except OSError:
            pass  # the client went away or stalled: nothing to answer
        finally:
            self.shutdown_request(sock)

    def handle_error(self, request, client_address) -> None:  # quiet: a broken client is not our error
        pass

    def server_close(self) -> None:
        self._closing = True
        self._wake_w.send(b"\0")
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake_r.close()
        self._wake_w.close()
        super().server_close()


def _one_line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _Pending:
    """A connection in the selector: its bytes so far and when it is closed unless its request head is in.

    The dispatcher thread reads the request line and headers itself, without blocking, so a client that
    sends a byte every few seconds (slowloris) holds no worker: a worker gets only whole request heads.
    """

    #: bytes of a request head; past it the head goes to a worker as is (answered 400/414 there)
    MAX_HEAD = 65536

    def __init__(self, address, idle_deadline: float) -> None:
        self.address, self.deadline = address, idle_deadline
        self.data = bytearray()
        self.complete = False

    def receive(self, sock: socket.socket, header_timeout: float) -> bool:
        """Read what ``sock`` has; ``True`` while the head is still incomplete and the connection open."""
        try:
            chunk = sock.recv(self.MAX_HEAD + 1 - len(self.data))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not chunk:
            return False
        if not self.data:  # the head's deadline runs from its first byte
            self.deadline = time.monotonic() + header_timeout
        self.data += chunk
        self.complete = b"\r\n\r\n" in self.data or b"\n\n" in self.data or len(self.data) > self.MAX_HEAD
        return not self.complete


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer

    def setup(self) -> None:
        super().setup()
        # one request per connection (HTTP/1.0), its head already read by the dispatcher: parsed from memory
        self.rfile.close()
        self.rfile = io.BytesIO(self.server._local.head)

    def log_message(self, format, *args) -> None:  # quiet: one line per request is noise here
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _decoded_path(self) -> str | None:
        """The request's path, percent-decoded; ``None`` after answering a malformed one."""
        if len(self.path) > MAX_PATH:
            self._send(HTTPStatus.REQUEST_URI_TOO_LONG, b"path too long\n")
            return None
        try:
            path = unquote(urlparse(self.path).path, errors="strict")
        except (UnicodeDecodeError, ValueError):
            self._send(HTTPStatus.BAD_REQUEST, b"path is not valid UTF-8\n")
            return None
        if any(ord(c) < 32 or ord(c) == 127 for c in path) or any(
                len(part.encode("utf-8", "surrogatepass")) > MAX_NAME for part in path.split("/")):
            self._send(HTTPStatus.BAD_REQUEST, b"malformed path\n")
            return None
        return path

    def do_GET(self) -> None:
        try:
            self._get()
        except OSError:
            raise  # the client went away: nothing to answer
        except Exception as exc:  # a bug or a damaged file: an answer, not a dropped connection
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, f"dashboard error: {_one_line(exc)}\n".encode())

    def _get(self) -> None:
        path = self._decoded_path()
        if path is None:
            return None
        if path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, self.server.page()[0], "text/html; charset=utf-8")
        if path == "/version":
            return self._send(HTTPStatus.OK, self.server.page()[1].encode())
        parts = path.split("/", 3)
        if len(parts) == 4 and parts[1] == "runs":
            return self._send_run_file(parts[2], parts[3])
        return self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def _send_run_file(self, index: str, rest: str) -> None:
        if not _RUN_INDEX.fullmatch(index):
            return self._send(HTTPStatus.BAD_REQUEST, b"run index must be a number\n")
        if int(index) >= len(self.server.run_dirs):
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n")
        root = self.server.run_dirs[int(index)]
        try:
            target = (root / rest).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a name the file system refuses
            return self._send(HTTPStatus.BAD_REQUEST, b"malformed path\n")
        if not target.is_relative_to(root):
            return self._send(HTTPStatus.FORBIDDEN, b"outside the run folders\n")
        if not target.is_file():
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n")
        return self._send(HTTPStatus.OK, target.read_bytes(), "application/octet-stream")


def make_server(run_dirs: list[str], host: str = "127.0.0.1", port: int = 8050, watch: float | None = None,
                **limits) -> DashboardServer:
    """A server bound to ``host`` (loopback by default); port 0 picks a free one. ``limits``: ``workers``,
    ``idle_timeout``, ``request_timeout``, ``header_timeout`` of :class:`DashboardServer`."""
    try:
        return DashboardServer((host, port), run_dirs, watch, **limits)
    except socket.gaierror as exc:
        raise DashboardError(f"cannot serve on {host}:{port}: unknown host ({exc.strerror or exc})") from None
    except OSError as exc:
        raise DashboardError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None
