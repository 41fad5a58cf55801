"""``nas-attn dashboard RUN_DIR [RUN_DIR ...] [--out FILE] [--serve [--watch]] [--png FILE]``."""

from __future__ import annotations

import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

from nas_attn.cli import OneLineArgumentParser, run_cli
from nas_attn.dashboard.page import build_page
from nas_attn.dashboard.rundata import DashboardError, load_run
from nas_attn.results import write_atomic


def build_parser(prog: str) -> OneLineArgumentParser:
    p = OneLineArgumentParser(prog=prog, description="Browse the Pareto front of one or more search runs.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="results/<space>/<run-id> folder(s); several overlay")
    p.add_argument("--out", help="HTML file to write (default: RUN_DIR/dashboard.html of the first run)")
    p.add_argument("--serve", action="store_true", help="serve the page on --host:--port instead of writing it")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8050)
    p.add_argument("--watch", action="store_true", help="with --serve: reload while a search is still running")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between --watch checks (default 5)")
    p.add_argument("--png", help="also export the Pareto plot as PNG (needs kaleido and a Chrome/Chromium)")
    return p


def main(argv: list[str] | None = None, prog: str = "nas-attn dashboard") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: run_dashboard(args), prog)


def _load(run_dirs: list[str]):
    return [load_run(d) for d in run_dirs]


def _export_png(runs, path: str) -> None:
    from nas_attn.dashboard.figures import pareto

    try:
        pareto(runs).write_image(path, width=1100, height=600, scale=2)
    except Exception as exc:
        raise DashboardError(f"--png {path}: PNG export needs kaleido with a Chrome/Chromium it can drive "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                             f"or use the camera icon of the Pareto plot in the page") from None


def run_dashboard(args) -> int:
    if args.watch and not args.serve:
        raise DashboardError("--watch needs --serve (a written file cannot refresh itself)")
    if not 0 < args.port < 65536:
        raise DashboardError(f"--port {args.port}: not a TCP port")
    runs = _load(args.runs)
    if args.png:
        _export_png(runs, args.png)
        print(f"Pareto plot: {args.png}")
    if not args.serve:
        out = Path(args.out) if args.out else runs[0].run_dir / "dashboard.html"
        if not out.parent.is_dir():
            raise DashboardError(f"--out {out}: no such folder {out.parent}")
        write_atomic(out, build_page(runs))
        print(f"dashboard: {out}")
        return 0
    server = make_server(args.runs, args.host, args.port, args.interval if args.watch else None)
    host, port = server.server_address[:2]
    print(f"dashboard: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


class DashboardServer(ThreadingHTTPServer):
    """Serves the page at ``/``, ``/version`` (for --watch) and the run folders' own files under
    ``/runs/<i>/<path>``; nothing outside the run folders."""

    daemon_threads = True

    def __init__(self, address, run_dirs: list[str], watch: float | None) -> None:
        self.run_dirs = [Path(d).expanduser().resolve() for d in run_dirs]
        self.watch = watch
        self._lock = threading.Lock()
        self._page: bytes = b""
        self._version = ""
        self.refresh()
        super().__init__(address, DashboardHandler)

    def version(self) -> str:
        latest = 0.0
        for d in self.run_dirs:
            for f in ("optuna.journal", "manifest.json", "front_eval.json", "trials.parquet"):
                p = d / f
                if p.exists():
                    latest = max(latest, p.stat().st_mtime)
        return f"{latest:.3f}"

    def refresh(self) -> None:
        version = self.version()
        with self._lock:
            if version == self._version and self._page:
                return
            self._page = build_page(_load([str(d) for d in self.run_dirs]), self.watch).encode()
            self._version = version

    def page(self) -> tuple[bytes, str]:
        if self.watch:
            try:
                self.refresh()
            except DashboardError:
                pass  # a file caught mid-write: keep the last good page
        with self._lock:
            return self._page, self._version


class DashboardHandler(BaseHTTPRequestHandler):
    server: DashboardServer

    def log_message(self, format, *args) -> None:  # quiet: one line per request is noise here
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = unquote(urlparse(self.path).path)
        if path in ("/", "/index.html"):
            page, _ = self.server.page()
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        if path == "/version":
            return self._send(HTTPStatus.OK, self.server.page()[1].encode())
        parts = path.split("/", 3)
        if len(parts) == 4 and parts[1] == "runs" and parts[2].isdigit() and int(parts[2]) < len(self.server.run_dirs):
            root = self.server.run_dirs[int(parts[2])]
            target = (root / parts[3]).resolve()
            if target.is_relative_to(root) and target.is_file():
                return self._send(HTTPStatus.OK, target.read_bytes(), "application/octet-stream")
            if not target.is_relative_to(root):
                return self._send(HTTPStatus.FORBIDDEN, b"outside the run folders\n")
        return self._send(HTTPStatus.NOT_FOUND, b"not found\n")


def make_server(run_dirs: list[str], host: str = "127.0.0.1", port: int = 8050,
                watch: float | None = None) -> DashboardServer:
    """A server bound to ``host`` (loopback by default); port 0 picks a free one."""
    try:
        return DashboardServer((host, port), run_dirs, watch)
    except OSError as exc:
        raise DashboardError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None

