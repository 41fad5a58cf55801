"""``python -m nas_attn`` / ``nas-attn``: positions, complexity, modules, search, dashboard."""

from __future__ import annotations

import json
import sys

from nas_attn.cli import OneLineArgumentParser, run_cli


def _positions(args) -> None:
    from nas_attn.arch import Arch

    arch = Arch(args.backbone, width=args.width, input_size=args.input_size, small_input=args.small_input,
                in_chans=args.in_chans)
    rows = arch.positions()
    if args.json:
        print(json.dumps([p.as_dict() for p in rows]))
        return
    print(f"{args.backbone} (width {args.width}, input {args.input_size}, small_input {args.small_input})")
    print(f"{'pos':>4} {'kind':<22} {'in':>5} {'out':>5} {'stride':>6} {'side':>5}  ops")
    for p in rows:
        print(f"{p.index:>4} {p.kind:<22} {p.in_channels:>5} {p.out_channels or '':>5} {p.stride:>6} {p.side:>5}  "
              f"{', '.join(p.ops) or '-'}")


def _complexity(args) -> None:
    from nas_attn.arch import Arch
    from nas_attn.complexity import complexity

    arch = Arch.from_json(args.arch)
    out = {**complexity(arch), "placements": arch.short()}
    out["mflops"] = round(out["flops"] / 1e6, 3)
    print(json.dumps(out))


def _modules(args) -> None:
    from nas_attn.modules import get_entry, list_modules

    for name in list_modules():
        e = get_entry(name)
        groups = f"groups (default {e.default_groups})" if e.takes_groups else "no groups"
        print(f"{name:<16} {groups:<22} {e.source}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # search and dashboard own their flags; hand them the rest of the line untouched
    if argv and argv[0] == "search":
        from nas_attn.search import main as search_main

        return search_main(argv[1:], prog="nas-attn search")
    if argv and argv[0] == "dashboard":
        from nas_attn.dashboard.cli import main as dashboard_main

        return dashboard_main(argv[1:], prog="nas-attn dashboard")

    parser = OneLineArgumentParser(prog="nas-attn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    p = sub.add_parser("positions", help="print a backbone's numbered positions")
    p.add_argument("backbone")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--small-input", action="store_true")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    p.set_defaults(fn=_positions)
    c = sub.add_parser("complexity", help="params and multiply-adds of an arch")
    c.add_argument("--arch", required=True, help="arch as a JSON string or a .json file")
    c.set_defaults(fn=_complexity)
    m = sub.add_parser("modules", help="list the registered attention modules")
    m.set_defaults(fn=_modules)
    sub.add_parser("search", help="run a search (see nas-attn search --help)")
    sub.add_parser("dashboard", help="the Pareto dashboard (see nas-attn dashboard --help)")
    args = parser.parse_args(argv)
    return run_cli(lambda: args.fn(args), "nas-attn")


if __name__ == "__main__":
    sys.exit(main())
