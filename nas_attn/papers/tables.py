"""Our parameters and multiply-adds for every figure in :mod:`nas_attn.papers.figures`, side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass

from nas_attn.arch import Arch
from nas_attn.papers.figures import FIGURES, NO_FIGURES, Figure, ModuleCase, Quantity

#: relative difference above which a row needs a reason
TOLERANCE = 0.01


@dataclass(frozen=True)
class Comparison:
    """One figure and ours: ``status`` is ``match`` (within 1 %), ``rounds`` (ours prints as the paper's
    figure at its precision), ``differs`` (explained by ``figure.reason``), ``n/a`` (nothing here expresses
    the row) or ``ours only`` (a row that prints accuracy only: our figures, none of the paper's)."""

    figure: Figure
    params: int | None
    flops: int | None

    @property
    def params_diff(self) -> float | None:
        return _relative(self.params, self.figure.params)

    @property
    def flops_diff(self) -> float | None:
        return _relative(self.flops, self.figure.flops)

    @property
    def status(self) -> str:
        pairs = [(q, v) for q, v in ((self.figure.params, self.params), (self.figure.flops, self.flops)) if q]
        if self.figure.target is None:
            return "n/a"
        if not pairs:
            return "ours only"
        if all(abs(v - q.value) <= TOLERANCE * q.value for q, v in pairs):
            return "match"
        if all(abs(v - q.value) <= TOLERANCE * q.value or q.printed_as(v) for q, v in pairs):
            return "rounds"
        return "differs"


def _relative(ours: int | None, paper: Quantity | None) -> float | None:
    return None if ours is None or paper is None else (ours - paper.value) / paper.value


def compare(figures: tuple[Figure, ...] = FIGURES) -> list[Comparison]:
    """Our figures for ``figures`` (imports torch: each arch or module is built on the meta device, once per
    distinct target: many rows share one)."""
    cache: dict[str, tuple[int | None, int | None]] = {}
    out = []
    for f in figures:
        key = json.dumps(f.target.to_dict(), sort_keys=True) if f.target is not None else ""
        if key not in cache:
            cache[key] = _ours(f.target)
        out.append(Comparison(f, *cache[key]))
    return out


def _ours(target: Arch | ModuleCase | None) -> tuple[int | None, int | None]:
    if target is None:
        return None, None
    if isinstance(target, Arch):
        from nas_attn.complexity import complexity

        cost = complexity(target)
        return cost["params"], cost["flops"]
    import torch

    from nas_attn.complexity import count_flops, count_params
    from nas_attn.modules import create

    with torch.device("meta"):
        module = create(target.module, target.channels, target.groups)
    return count_params(module), count_flops(module, (1, target.channels, target.side, target.side))


def target_text(target: Arch | ModuleCase | None) -> str:
    """``mobilenetv2: 14:ulsam/g4/sub`` for an arch, ``se on 512 x 14 x 14`` for a module alone."""
    if isinstance(target, Arch):
        width = f" x{target.width:g}" if target.width != 1.0 else ""
        return f"{target.backbone}{width}: {target.short()}"
    if isinstance(target, ModuleCase):
        return f"{target.module} on {target.channels} x {target.side} x {target.side}"
    return "-"


def _num(value: int | None, like: Quantity | None) -> str:
    """``value`` in the unit of the paper's figure, two digits finer; in G, M or K when there is none."""
    if value is None:
        return "-"
    if like is not None:
        unit = like.text[-1]
        decimals = min(3, len(like.text[:-1].partition(".")[2]) + 2)
    else:
        unit, decimals = next((u for u in "GM" if value >= _SCALE[u]), "K"), 2
    return f"{value / _SCALE[unit]:.{decimals}f}{unit}"


_SCALE = {"G": 1e9, "M": 1e6, "K": 1e3}


def _exact(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _pct(diff: float | None) -> str:
    return "-" if diff is None else f"{100 * diff:+.1f}%"


def _note(c: Comparison) -> str:
    notes = [c.figure.placement] if c.figure.placement else []
    if c.status == "rounds":
        notes.append("ours prints as the paper's figure at its precision")
    if c.status in ("differs", "n/a", "ours only") or (c.figure.reason and c.status != "match"):
        notes.append(c.figure.reason)
    return "; ".join(n for n in notes if n)


COLUMNS = ("id", "paper", "table", "row", "arch", "paper params", "ours", "diff", "paper flops", "ours", "diff",
           "dataset", "top-1", "top-5", "status", "note")


def rows(comparisons: list[Comparison]) -> list[tuple[str, ...]]:
    """The comparison as text cells, in :data:`COLUMNS` order."""
    return [(c.figure.id, c.figure.paper, c.figure.table, c.figure.row, target_text(c.figure.target),
             c.figure.params.text if c.figure.params else "-", _exact(c.params), _pct(c.params_diff),
             c.figure.flops.text if c.figure.flops else "-", _exact(c.flops), _pct(c.flops_diff),
             c.figure.dataset or "-", c.figure.top1 or "-", c.figure.top5 or "-", c.status, _note(c))
            for c in comparisons]


def to_markdown(comparisons: list[Comparison]) -> str:
    """One markdown table per paper (its source above it), then the papers' tables that print no figures."""
    out: list[str] = []
    skip = {1}  # the paper column: one table per paper
    head = [h for i, h in enumerate(COLUMNS) if i not in skip]
    for paper in dict.fromkeys(c.figure.paper for c in comparisons):
        mine = [c for c in comparisons if c.figure.paper == paper]
        sources = "; ".join(dict.fromkeys(c.figure.source for c in mine))
        out += [f"### {paper}", "", f"Source: {sources}.", "", "| " + " | ".join(head) + " |",
                "|" + " --- |" * len(head)]
        out += ["| " + " | ".join(cell.replace("|", "/") for i, cell in enumerate(r) if i not in skip) + " |"
                for r in rows(mine)]
        out.append("")
    out += ["### Tables without figures", ""]
    out += [f"- **{paper}**: {tables}." for paper, tables in NO_FIGURES]
    return "\n".join(out) + "\n"


def to_text(comparisons: list[Comparison]) -> str:
    """For the terminal: a line of figures per row, then its label, arch, accuracy and note, indented."""
    lines = [f"{'id':<18} {'params: paper':>13} {'ours':>8} {'diff':>7}   {'flops: paper':>12} {'ours':>8} "
             f"{'diff':>7}  status"]
    for c, r in zip(comparisons, rows(comparisons), strict=True):
        ours_p, ours_f = _num(c.params, c.figure.params), _num(c.flops, c.figure.flops)
        lines.append(f"{r[0]:<18} {r[5]:>13} {ours_p:>8} {r[7]:>7}   {r[8]:>12} {ours_f:>8} {r[10]:>7}  {r[14]}")
        lines.append(f"{'':19}{r[2]}, {r[3]}")
        acc = ", ".join(f"{h} {v}" for h, v in (("top-1", r[12]), ("top-5", r[13])) if v != "-")
        lines += [f"{'':19}{text}" for text in (r[4], f"{r[11]}: {acc}" if acc else "", r[15]) if text and text != "-"]
    return "\n".join(lines) + "\n"


def to_json(comparisons: list[Comparison]) -> str:
    """Every row with its arch (or module) as JSON, ours, the differences, the accuracy and the status."""
    items = []
    for c in comparisons:
        f, t = c.figure, c.figure.target
        items.append({
            "id": f.id, "paper": f.paper, "table": f.table, "row": f.row, "source": f.source,
            "target": t.to_dict() if t is not None else None,
            "paper_params": f.params.text if f.params else None, "params": c.params, "params_diff": c.params_diff,
            "paper_flops": f.flops.text if f.flops else None, "flops": c.flops, "flops_diff": c.flops_diff,
            "dataset": f.dataset, "top1": f.top1, "top5": f.top5, "status": c.status, "placement": f.placement,
            "reason": f.reason,
        })
    no_figures = [{"paper": paper, "tables": tables} for paper, tables in NO_FIGURES]
    return json.dumps({"rows": items, "tables_without_figures": no_figures}, indent=1)
