"""``python -m nas_attn`` / ``nas-attn``: positions, backbones, complexity, modules, paper tables, search,
train, dashboard."""

from __future__ import annotations

import json
import sys

from nas_attn.cli import OneLineArgumentParser, run_cli


def _positions(args) -> None:
    from nas_attn.arch import Arch

    arch = Arch(args.backbone, width=args.width, input_size=args.input_size, small_input=args.small_input,
                in_chans=args.in_chans, variant=args.variant)
    rows = arch.positions()
    if args.json:
        print(json.dumps([p.as_dict() for p in rows]))
        return
    if args.markdown:
        print(positions_markdown(rows))
        return
    named = any(p.name for p in rows)  # an automatically numbered model: each position's module path
    settings = f"width {args.width}, input {args.input_size}, small_input {args.small_input}"
    print(f"{args.backbone} ({f'input {args.input_size}, in_chans {args.in_chans}' if named else settings})")
    width = max([len(p.name) for p in rows] + [6]) + 1 if named else 0
    print(f"{'pos':>4} {'module' if named else '':<{width}}{'kind':<22} {'in':>5} {'out':>5} {'stride':>6} "
          f"{'side':>5}  ops")
    for p in rows:
        print(f"{p.index:>4} {p.name:<{width}}{p.kind:<22} {p.in_channels:>5} {p.out_channels or '':>5} "
              f"{p.stride:>6} {p.side:>5}  {', '.join(p.ops) or '-'}")


def positions_markdown(rows: list) -> str:
    """A markdown table of positions (``docs/numbering.md`` is made of these)."""
    if any(p.name for p in rows):
        lines = ["| pos | module | kind | in → out | stride | side | ops |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        return "\n".join(lines + [f"| {p.index} | `{p.name}` | {p.kind} | {p.in_channels} → {p.out_channels} | "
                                  f"{p.stride} | {p.side} | {', '.join(p.ops)} |" for p in rows])
    lines = ["| pos | kind | in → out | stride | side | ops |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {p.index} | {p.kind} | {p.in_channels} → {p.out_channels or 'classes'} | {p.stride} | {p.side} | "
              f"{', '.join(p.ops) or '-'} |" for p in rows]
    return "\n".join(lines)


def _backbones(args) -> None:
    from nas_attn.backbones import get_backbone, list_backbones

    for name in list_backbones():
        b = get_backbone(name)
        extras = (["width"] if b.has_width else []) + ([f"variant {'/'.join(b.variants)}"] if b.variants else [])
        print(f"{name:<18} {len(b.positions()):>3} positions  {', '.join(extras) or '-':<24} {b.reference}")
    print("and any CNN, numbered automatically: timm:<model>, torchvision:<model>, py:<package.module>:<factory> "
          "(docs/numbering.md, \"Any CNN\")")


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
        limit = f"<= {e.max_positions} positions" if e.max_positions else ""
        options = ", ".join(e.options or ()) or "-"
        print(f"{name:<18} {groups:<22} {limit:<18} options: {options:<34} {e.source}")


def _paper_tables(args) -> None:
    from nas_attn.errors import NasAttnError
    from nas_attn.papers.figures import BY_ID, FIGURES
    from nas_attn.papers.tables import compare, to_json, to_markdown, to_text

    if args.arch is not None:
        figure = BY_ID.get(args.arch)
        if figure is None:
            raise NasAttnError(f"no paper-table row {args.arch!r} (the ids are listed by nas-attn paper-tables)")
        if figure.target is None:
            raise NasAttnError(f"row {args.arch} has no arch: {figure.reason}")
        print(json.dumps(figure.target.to_dict()))
        return
    figures = tuple(f for f in FIGURES if args.paper is None or f.paper.lower() == args.paper.lower())
    if not figures:
        papers = ", ".join(dict.fromkeys(f.paper for f in FIGURES))
        raise NasAttnError(f"no figures for paper {args.paper!r} (papers: {papers})")
    format_ = {"text": to_text, "markdown": to_markdown, "json": to_json}[args.format]
    print(format_(compare(figures)), end="")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # search and dashboard own their flags; hand them the rest of the line untouched
    if argv and argv[0] in ("search", "train", "dashboard"):
        prog = f"nas-attn {argv[0]}"
        # imported under run_cli: a broken install of what they import is one line too, not a traceback
        return run_cli(lambda: _delegate(argv[0], argv[1:], prog), prog)

    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.fn(args), "nas-attn")


def _delegate(command: str, argv: list[str], prog: str) -> int:
    """``nas-attn search|train|dashboard …``: the command's own ``main`` (its own run_cli inside)."""
    if command == "search":
        from nas_attn.search import main as command_main
    elif command == "train":
        from nas_attn.search import train_main as command_main
    else:
        from nas_attn.dashboard.cli import main as command_main
    return command_main(argv, prog=prog)


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog="nas-attn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    p = sub.add_parser("positions", help="print a backbone's numbered positions")
    p.add_argument("backbone")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--small-input", action="store_true")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--variant", default=None, help="the family's variant (resnet50: v1.5 or v1)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    form.add_argument("--markdown", action="store_true", help="a markdown table")
    p.set_defaults(fn=_positions)
    b = sub.add_parser("backbones", help="list the backbone families")
    b.set_defaults(fn=_backbones)
    c = sub.add_parser("complexity", help="params and multiply-adds of an arch")
    c.add_argument("--arch", required=True, help="arch as a JSON string or a .json file")
    c.set_defaults(fn=_complexity)
    m = sub.add_parser("modules", help="list the registered attention modules")
    m.set_defaults(fn=_modules)
    t = sub.add_parser("paper-tables", help="the source papers' tables (params, FLOPs, accuracy) beside ours")
    t.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    t.add_argument("--paper", default=None, help="only this paper's rows (ULSAM, LGAM, LADNet, CSM, backbone)")
    t.add_argument("--arch", default=None, metavar="ROW_ID",
                   help="print the arch JSON of one row (ids as ULSAM-T7-r3, listed by the table)")
    t.set_defaults(fn=_paper_tables)
    sub.add_parser("search", help="run a search (see nas-attn search --help)")
    sub.add_parser("train", help="train one arch outside a search (see nas-attn train --help)")
    sub.add_parser("dashboard", help="the Pareto dashboard (see nas-attn dashboard --help)")
    _add_take_away_commands(sub)
    return parser


def _add_take_away_commands(sub) -> None:
    e = sub.add_parser("export", help="write a trial's trained model (TorchScript, ONNX or a state dict)")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--trial", type=int, required=True)
    e.add_argument("--format", required=True, choices=("torchscript", "onnx", "state_dict"))
    e.add_argument("--out", required=True, help="the file to write; the model takes images normalised as in "
                   "training, (x/255 - mean)/std with the run's mean and std, which the file records")
    e.set_defaults(fn=_export)
    h = sub.add_parser("heatmaps", help="Grad-CAM heatmaps of trials on fixed test images (into RUN_DIR/heatmaps)")
    h.add_argument("run_dir", metavar="RUN_DIR")
    h.add_argument("--trials", type=int, nargs="+", help="default: the vanilla trial and the front")
    h.add_argument("--images", type=int, default=8, help="test images, one class after another (default 8)")
    h.add_argument("--quiet", action="store_true", help="no progress line per trial (on stderr)")
    h.set_defaults(fn=_heatmaps)


def _export(args) -> None:
    from nas_attn.export import export_trial

    r = export_trial(args.run_dir, args.trial, args.format, args.out)
    print(f"{r.path}: trial {args.trial} as {r.format}, {r.bytes:,} bytes; outputs match PyTorch's within "
          f"{r.max_abs_diff:.2g} on the run's test images")


def _heatmaps(args) -> None:
    from nas_attn.errors import NasAttnError
    from nas_attn.heatmaps import heatmaps_command

    if not 1 <= args.images <= 64:
        raise NasAttnError(f"--images {args.images}: between 1 and 64")
    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    for path in heatmaps_command(args.run_dir, args.trials, args.images, None if args.quiet else progress):
        print(f"heatmaps: {path}")


if __name__ == "__main__":
    sys.exit(main())
