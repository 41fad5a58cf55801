"""Our parameters and multiply-adds for every figure in :mod:`nas_attn.papers.figures`, side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass

from nas_attn.arch import Arch
from nas_attn.papers.figures import FIGURES, UNAVAILABLE, Figure, ModuleCase, Quantity

#: relative difference above which a row needs a reason
TOLERANCE = 0.01


@dataclass(frozen=True)
class Comparison:
    """One figure and ours: ``status`` is ``match`` (within 1 %), ``rounds`` (ours prints as the paper's
    figure at its precision), ``differs`` (explained by ``figure.reason``), ``n/a`` (nothing here expresses
    the row) or ``ours only`` (a network of a table whose figures were not found)."""

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
    """Our figures for ``figures`` (imports torch: each arch or module is built on the meta device)."""
    return [Comparison(f, *_ours(f.target)) for f in figures]


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


def _pct(diff: float | None) -> str:
    return "-" if diff is None else f"{100 * diff:+.1f}%"


def _note(c: Comparison) -> str:
    notes = [c.figure.placement] if c.figure.placement else []
    if c.status == "rounds":
        notes.append("ours prints as the paper's figure at its precision")
    if c.status in ("differs", "n/a", "ours only") or (c.figure.reason and c.status != "match"):
        notes.append(c.figure.reason)
    return "; ".join(n for n in notes if n)


COLUMNS = ("paper", "table", "row", "arch", "paper params", "ours", "diff", "paper flops", "ours", "diff",
           "status", "note", "source")


def rows(comparisons: list[Comparison]) -> list[tuple[str, ...]]:
    """The comparison as text cells, in :data:`COLUMNS` order."""
    return [(c.figure.paper, c.figure.table, c.figure.row, target_text(c.figure.target),
             c.figure.params.text if c.figure.params else "-", _num(c.params, c.figure.params), _pct(c.params_diff),
             c.figure.flops.text if c.figure.flops else "-", _num(c.flops, c.figure.flops), _pct(c.flops_diff),
             c.status, _note(c), c.figure.source)
            for c in comparisons]


def to_markdown(comparisons: list[Comparison]) -> str:
    """One markdown table per paper, then the tables not available here."""
    out: list[str] = []
    for paper in dict.fromkeys(c.figure.paper for c in comparisons):
        out += [f"### {paper}", "", "| " + " | ".join(COLUMNS[1:]) + " |", "|" + " --- |" * (len(COLUMNS) - 1)]
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in r[1:]) + " |"
                for r in rows([c for c in comparisons if c.figure.paper == paper])]
        out.append("")
    out += ["### Figures not available here", ""]
    out += [f"- **{u.paper} {u.tables}**: looked in {'; '.join(u.looked)}." for u in UNAVAILABLE]
    return "\n".join(out) + "\n"


def to_text(comparisons: list[Comparison]) -> str:
    """For the terminal: a line of figures per row, then its arch and its note, indented."""
    lines = [f"{'paper':<8} {'row':<36} {'params: paper':>13} {'ours':>8} {'diff':>7}   {'flops: paper':>12} "
             f"{'ours':>8} {'diff':>7}  status"]
    for r in rows(comparisons):
        lines.append(f"{r[0]:<8} {r[2][:36]:<36} {r[4]:>13} {r[5]:>8} {r[6]:>7}   {r[7]:>12} {r[8]:>8} {r[9]:>7}  "
                     f"{r[10]}")
        lines += [f"{'':9}{text}" for text in (r[3], r[11]) if text and text != "-"]
    lines += [f"not available here: {u.paper} {u.tables}" for u in UNAVAILABLE]
    return "\n".join(lines) + "\n"


def to_json(comparisons: list[Comparison]) -> str:
    """Every row with its arch (or module) as JSON, ours, the differences and the status."""
    items = []
    for c in comparisons:
        t = c.figure.target
        items.append({
            "paper": c.figure.paper, "table": c.figure.table, "row": c.figure.row, "source": c.figure.source,
            "target": t.to_dict() if t is not None else None,
            "paper_params": c.figure.params.text if c.figure.params else None, "params": c.params,
            "params_diff": c.params_diff,
            "paper_flops": c.figure.flops.text if c.figure.flops else None, "flops": c.flops,
            "flops_diff": c.flops_diff, "status": c.status, "placement": c.figure.placement,
            "reason": c.figure.reason,
        })
    unavailable = [{"paper": u.paper, "tables": u.tables, "looked": list(u.looked)} for u in UNAVAILABLE]
    return json.dumps({"rows": items, "not_available": unavailable}, indent=1)
