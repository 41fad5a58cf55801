"""One self-contained HTML page: plotly.js inlined, no CDN, no web fonts, no network."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from nas_attn.arch import Arch
from nas_attn.dashboard import figures
from nas_attn.dashboard.rundata import RunData
from nas_attn.heatmaps import overlay
from nas_attn.results import prediction_mask

_URL = re.compile(r"(https?:)//(?!www\.w3\.org/)")
_HERE = Path(__file__).parent


@lru_cache(maxsize=1)
def offline_plotlyjs() -> str:
    """plotly.js with every URL but XML namespace names pointed at the reserved ``.invalid`` domain.

    The bundle carries tile-server and CDN addresses used only by map traces (which this page never draws);
    rewritten, the page holds no reference to anything outside itself. ``www.w3.org`` strings are
    namespace identifiers (SVG, XLink), never fetched, and needed to draw SVG.
    """
    return _URL.sub(r"\1//offline.invalid/", get_plotlyjs()).replace("</script", "<\\/script")


def _clean(v: Any) -> Any:
    if v is pd.NA or v is pd.NaT:  # a nullable column's missing cell (``retrain_of``)
        return None
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def _png(rgb) -> str:
    """An RGB uint8 picture as a data: URI (the page stays one self-contained file)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _heatmap_payload(run: RunData) -> dict[str, Any] | None:
    """The fixed images (with their true classes) and, per trial that has them, its heatmaps over them."""
    images = run.heatmap_images
    if images is None or not run.heatmaps:
        return None
    trials = {}
    for number, h in run.heatmaps.items():
        trials[number] = {"layers": list(h.layers),
                          "predicted": [images.name(int(c)) for c in h.predicted],
                          "confidence": [round(float(c), 3) for c in h.confidence],
                          "pngs": [[_png(overlay(img, m)) for img, m in zip(images.images, maps, strict=True)]
                                   for maps in h.maps]}
    vanilla = run.trials[run.trials["vanilla"].astype(bool) & run.trials["trial"].isin(list(trials))]["trial"]
    return {"images": [_png(overlay(img, None)) for img in images.images],
            "labels": [images.name(int(c)) for c in images.labels], "trials": trials,
            "vanilla": int(vanilla.iloc[0]) if len(vanilla) else None}


def _trial_payload(r: dict[str, Any], front: set[int]) -> dict[str, Any]:
    arch = Arch.from_json(r["arch"])
    marks = [{"position": p.position, "op": p.op, "module": p.module, "label": p.short()}
             for p in sorted(arch.placements, key=lambda p: p.position)]
    return {
        "trial": int(r["trial"]), "status": r.get("status"), "reason": _clean(r.get("reason")),
        "placements": r.get("placements"), "marks": marks, "params": _clean(r.get("params")),
        "flops": _clean(r.get("flops")), "latency_ms": _clean(r.get("latency_ms")),
        "val_acc_final": _clean(r.get("val_acc_final")), "val_acc_best": _clean(r.get("val_acc_best")),
        "test_acc": _clean(r.get("test_acc")), "val_top5_final": _clean(r.get("val_top5_final")),
        "test_top5": _clean(r.get("test_top5")), "epochs_run": _clean(r.get("epochs_run")),
        "seed": _clean(r.get("seed")), "wall_s": _clean(r.get("wall_s")), "device": _clean(r.get("device")),
        "node": _clean(r.get("node")), "arch": arch.to_dict(), "on_front": int(r["trial"]) in front,
        "evaluation": _clean(r.get("evaluation")), "retrain_of": _clean(r.get("retrain_of")),
    }


def _run_payload(run: RunData) -> dict[str, Any]:
    front = set(run.front["trial"].astype(int)) if len(run.front) else set()
    trials = {int(r["trial"]): _trial_payload(r, front) for r in run.trials.to_dict("records")}
    history: dict[int, dict[str, list]] = {}
    for trial, h in run.history.groupby("trial") if len(run.history) else []:
        h = h.sort_values("epoch")
        history[int(trial)] = {k: [_clean(v) for v in h[k]] for k in ("epoch", "val_acc", "train_loss", "train_acc")
                               if k in h}
    best = run.front.sort_values("val_acc_final", ascending=False)["trial"].iloc[0] if len(run.front) else None
    return {"name": run.name, "positions": run.positions, "trials": trials, "history": history,
            "best": _clean(best), "heatmaps": _heatmap_payload(run),
            "manifest": run.manifest.model_dump(mode="json", include={"space", "run_id", "status", "dataset", "budget",
                                                                       "sampler", "strategy"})}


#: how a table shows a column (default: 4 decimals for numbers): MFLOPs, seconds, milliseconds, counts
_FORMATS = {"flops": lambda v: f"{v / 1e6:.2f}", "wall_s": lambda v: f"{v:.1f}",
            "latency_ms": lambda v: f"{v:.3f}", "params": lambda v: f"{int(v):,}",
            "epochs_run": lambda v: f"{int(v)}", "reeval_seeds": lambda v: f"{int(v)}",
            "retrain_of": lambda v: f"{int(v)}"}


def _table(df: pd.DataFrame, table_id: str, columns: list[tuple[str, str]], runs: bool) -> str:
    if not len(df):
        return f'<p class="empty" id="{table_id}-empty">No rows yet.</p>'
    head = "".join(f'<th data-col="{i}">{html.escape(label)}</th>' for i, (_, label) in enumerate(columns))
    rows = []
    for r in df.to_dict("records"):
        cells = []
        for key, _ in columns:
            v = _clean(r.get(key))
            if v is None:
                text, sort = "", ""
            elif key in _FORMATS:
                text, sort = _FORMATS[key](v), v
            elif isinstance(v, float):
                text, sort = f"{v:.4f}", v
            else:
                text, sort = str(v), v
            cells.append(f'<td data-sort="{html.escape(str(sort))}">{html.escape(text)}</td>')
        rows.append(f'<tr data-run="{r.get("_run", 0)}" data-trial="{int(r["trial"])}">{"".join(cells)}</tr>')
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _fig_div(fig, div_id: str, empty: str) -> str:
    if fig is None:
        return f'<div class="graph empty" id="{div_id}"><p>{html.escape(empty)}</p></div>'
    spec = pio.to_json(fig).replace("</", "<\\/")
    return (f'<div class="graph" id="{div_id}"></div><script>(function () {{ const f = {spec}; '
            f'Plotly.newPlot("{div_id}", f.data, f.layout, {{responsive: true, displaylogo: false}}); }})();</script>')


def _stack(runs: list[RunData], table: str) -> pd.DataFrame:
    """One table of every run's ``trials`` or ``front``, with the run's index and name on each row."""
    frames = [getattr(r, table).assign(_run=i, run=r.name) for i, r in enumerate(runs)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _columns(all_trials: pd.DataFrame, all_front: pd.DataFrame, multi: bool):
    """(front table's, all-trials table's) columns: (key, heading)."""
    run_col = [("run", "run")] if multi else []
    latency = [("latency_ms", "latency ms")] if _measured(all_trials, "latency_ms") else []
    top5 = [("val_top5_final", "val top-5")] if _measured(all_trials, "val_top5_final") else []
    test_top5 = [("test_top5", "test top-5")] if _measured(all_front, "test_top5") else []
    front_cols = run_col + [("trial", "trial"), ("val_acc_final", "val acc"), *top5, ("test_acc", "test acc"),
                            *test_top5, ("flops", "MFLOPs"), *latency, ("params", "params"),
                            ("placements", "placements")]
    if "reeval_val_mean" in all_front:
        front_cols += [("reeval_seeds", "re-eval seeds"), ("reeval_val_mean", "re-eval val mean"),
                       ("reeval_val_std", "± std"), ("reeval_test_mean", "re-eval test mean"),
                       ("reeval_test_std", "± std")]
    # a run of predictions: how each trial's accuracy was obtained, and which prediction a retraining checks
    predicted = len(all_trials) and prediction_mask(all_trials).any()
    strategy = [("evaluation", "evaluation"), ("retrain_of", "retrain of")] if predicted else []
    trial_cols = run_col + [("trial", "trial"), ("status", "status"), *strategy, ("val_acc_final", "val acc"),
                            ("val_acc_best", "best val acc"), *top5, ("flops", "MFLOPs"), *latency,
                            ("params", "params"), ("epochs_run", "epochs"), ("wall_s", "wall s"),
                            ("placements", "placements"), ("reason", "reason")]
    return front_cols, trial_cols


def _measured(df: pd.DataFrame, column: str) -> bool:
    """Whether any row has ``column`` (runs recorded before it existed, or with it unmeasured, do not)."""
    return column in df and df[column].notna().any()


def _run_line(r: RunData) -> str:
    source = (r.manifest.dataset.source if r.manifest.dataset else None) or "?"
    predicted = int(prediction_mask(r.trials).sum()) if len(r.trials) else 0
    how = f" ({r.manifest.strategy.get('name')})" if isinstance(r.manifest.strategy, dict) else ""
    counted = f"{len(r.trials)} trials" + (f", {predicted} of them predictions{how}" if predicted else "")
    return (f"<li><b>{html.escape(r.name)}</b>: {html.escape(r.manifest.status or '?')}; "
            f"{html.escape(source)}; {html.escape(counted)}, front of {len(r.front)}"
            + (" (trained trials only)" if predicted else "") + "</li>")


def build_page(runs: list[RunData], watch_seconds: float | None = None) -> str:
    """The dashboard of ``runs`` as one HTML string."""
    multi = len(runs) > 1
    all_trials, all_front = _stack(runs, "trials"), _stack(runs, "front")
    front_cols, trial_cols = _columns(all_trials, all_front, multi)
    counts = all_trials["status"].value_counts().to_dict() if len(all_trials) else {}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no trials yet"
    title = " + ".join(r.name for r in runs)
    payload = json.dumps({"runs": [_run_payload(r) for r in runs]}).replace("</", "<\\/")
    refresh = "" if not watch_seconds else f"<script>window.NAS_WATCH = {float(watch_seconds)};</script>"
    pareto_div = _fig_div(figures.pareto(runs) if len(all_trials) else None, "pareto",
                          "No trial has finished yet: nothing to plot.")
    latency = figures.latency(runs)
    predictions = figures.predictions(runs)
    return _TEMPLATE.format(
        title=html.escape(title), plotly=offline_plotlyjs(), css=(_HERE / "style.css").read_text(),
        info="".join(_run_line(r) for r in runs), summary=html.escape(summary), pareto=pareto_div,
        seed_note=html.escape(figures.seed_note(runs)) if len(all_trials) else "",
        predictions="" if predictions is None else (
            "<h2>Predicted against retrained accuracy</h2>" + _fig_div(predictions, "predictions", "")
            + '<p class="note" id="predictions-note">Each arch of the predicted front, trained from scratch: its '
              "prediction against the accuracy it trained to. Only trained figures are on the front and in the "
              "hypervolume.</p>"),
        latency="" if latency is None else "<h2>Latency against FLOPs</h2>" + _fig_div(latency, "latency", ""),
        parallel=_fig_div(figures.parallel(runs), "parallel", "No complete trial yet: no parallel coordinates."),
        hypervolume=_fig_div(figures.hypervolume(runs), "hypervolume", "No complete trial yet: no hypervolume."),
        front_table=_table(all_front, "front-table", front_cols, multi),
        trials_table=_table(all_trials, "trials-table", trial_cols, multi),
        payload=payload, app=(_HERE / "app.js").read_text(), refresh=refresh,
    )


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nas-attn — {title}</title>
<style>{css}</style>
<script>{plotly}</script>{refresh}
</head><body>
<h1>nas-attn dashboard — {title}</h1>
<ul id="runs-info">{info}</ul>
<p id="summary">Trials: {summary}.
 <label><input type="checkbox" id="show-failed" checked> show failed and pruned trials</label></p>
{pareto}
<p class="note" id="seed-note">{seed_note}</p>
<h2>Selected trial: <span id="detail-trial">-</span></h2>
<div id="detail"><div><table id="detail-metrics"></table>
<p><button id="copy-arch" type="button">copy arch JSON</button></p><pre id="arch-json"></pre></div>
<div><div class="graph" id="strip"></div><div id="strip-legend" class="legend"></div>
<div class="graph" id="curve"></div></div></div>
<div id="heatmaps"></div>
<h2>Pareto front</h2><div class="tablewrap">{front_table}</div>
{predictions}
{latency}
<h2>Search progress</h2>{hypervolume}
<h2>Choices per layer</h2>{parallel}
<h2>All trials</h2><div class="tablewrap">{trials_table}</div>
<script>const NAS = {payload};</script>
<script>{app}</script>
</body></html>
"""
