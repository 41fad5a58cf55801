"""``nas-attn dashboard RUN_DIR [RUN_DIR ...] [--out FILE] [--serve [--watch]] [--png FILE]``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from nas_attn.cli import OneLineArgumentParser, run_cli


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


def _check_args(args) -> None:
    """Everything the flags can get wrong, before the run folders are read (and plotly is imported)."""
    from nas_attn.errors import NasAttnError

    if args.watch and not args.serve:
        raise NasAttnError("--watch needs --serve (a written file cannot refresh itself)")
    if not 0 < args.port < 65536:
        raise NasAttnError(f"--port {args.port}: not a TCP port")
    if not (math.isfinite(args.interval) and 0.1 <= args.interval <= 3600):
        raise NasAttnError(f"--interval {args.interval}: must be a number of seconds in [0.1, 3600]")
    for run in args.runs:
        if not Path(run).expanduser().is_dir():
            raise NasAttnError(f"{Path(run).expanduser().absolute()}: no such run folder")
    if args.out is not None:
        _check_out(Path(args.out))


def _check_out(out: Path) -> None:
    """``--out`` can be written, checked before the page is built (which takes seconds)."""
    import os
    import tempfile

    from nas_attn.errors import NasAttnError

    if out.is_dir():
        raise NasAttnError(f"--out {out}: a folder; give the HTML file to write")
    if out.exists() and not out.is_file():  # a device or a pipe would be replaced by the page
        raise NasAttnError(f"--out {out}: not a regular file")
    if not out.parent.is_dir():
        raise NasAttnError(f"--out {out}: no such folder {out.parent}")
    try:  # the page is written through a temporary file beside it: probe exactly that, and remove the probe
        fd, probe = tempfile.mkstemp(prefix=f".{out.name[:100]}.", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NasAttnError(f"--out {out}: cannot write in {out.parent} ({exc.strerror or exc})") from None


def _export_png(runs, path: str) -> None:
    from nas_attn.dashboard.figures import pareto
    from nas_attn.dashboard.rundata import DashboardError

    try:
        pareto(runs).write_image(path, width=1100, height=600, scale=2)
    except Exception as exc:
        raise DashboardError(f"--png {path}: PNG export needs kaleido with a Chrome/Chromium it can drive "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                             f"or use the camera icon of the Pareto plot in the page") from None


def run_dashboard(args) -> int:
    _check_args(args)
    if args.serve:
        return _serve(args)
    from nas_attn.dashboard.page import build_page
    from nas_attn.dashboard.rundata import load_run
    from nas_attn.fsutil import write_atomic

    runs = [load_run(d) for d in args.runs]
    if args.png:
        _export_png(runs, args.png)
        print(f"Pareto plot: {args.png}")
    out = Path(args.out) if args.out else runs[0].run_dir / "dashboard.html"
    write_atomic(out, build_page(runs))
    print(f"dashboard: {out}")
    return 0


def _serve(args) -> int:
    from nas_attn.dashboard.server import make_server

    server = make_server(args.runs, args.host, args.port, args.interval if args.watch else None)
    host, port = server.server_address[:2]
    print(f"dashboard: http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
